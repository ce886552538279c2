//! The `dspex` command as a user runs it.

use std::process::Command;

fn dspex(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dspex"))
        .args(args)
        .output()
        .expect("the dspex binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn signature_prints_the_parsed_signature_as_json() {
    let (code, stdout, _) = dspex(&[
        "signature",
        "question: str, context: Vec<String> -> answer: int",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(
        v["instructions"],
        "Given the fields `question`, `context`, produce the fields `answer`."
    );
    assert_eq!(v["inputs"][1]["name"], "context");
    assert_eq!(v["inputs"][1]["type"], "list[str]");
    assert_eq!(v["inputs"][1]["rust_type"], "Vec<String>");
    assert_eq!(v["outputs"][0]["type"], "int");
    assert_eq!(v["outputs"][0]["prefix"], "Answer:");

    let (code, stdout, _) = dspex(&["signature", "a -> b", "--instructions", "Do it."]);
    assert_eq!(code, 0);
    assert!(stdout.contains("\"instructions\": \"Do it.\""), "{stdout}");
}

#[test]
fn a_bad_signature_exits_2_naming_position_and_reason() {
    let (code, stdout, stderr) = dspex(&["signature", "question -> answer -> extra"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("a signature has exactly one `->`; found another one here (column 20)"),
        "{stderr}"
    );
    // A caret under the mistake.
    assert!(stderr.contains("\n                     ^^ "), "{stderr}");

    let (code, _, stderr) = dspex(&["signature", "1a, q -> q: Vec<"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`1a` is not a valid field name"),
        "{stderr}"
    );
    assert!(stderr.contains("never closed"), "{stderr}");
}

#[test]
fn mock_lm_prints_its_address_first_and_serves() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_dspex"))
        .args(["mock-lm", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dspex mock-lm starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_string();
    let mut stream = std::net::TcpStream::connect(&addr).expect("the server accepts connections");
    let body = r#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"chat.completion\""), "{response}");
}

#[test]
fn mock_lm_rejects_bad_options_with_exit_2() {
    let (code, _, stderr) = dspex(&["mock-lm", "--fault", "explode"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn prompt_and_parse_accept_every_fixture() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/dspy");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the DSPy fixtures at {} cannot be read: {e}", dir.display()));
    let mut checked = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path.to_str().unwrap();
        match fixture["kind"].as_str() {
            Some("format") => {
                let (code, stdout, stderr) = dspex(&["prompt", file]);
                assert_eq!(code, 0, "{file}: {stderr}");
                let messages: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                assert_eq!(messages, fixture["expected_messages"], "{file}");
                checked += 1;
            }
            Some("parse") => {
                let (code, stdout, _) = dspex(&["parse", file]);
                let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                let ok = fixture["expected"].get("ok").is_some();
                assert_eq!(code, if ok { 0 } else { 1 }, "{file}");
                if ok {
                    assert_eq!(got, fixture["expected"], "{file}");
                } else {
                    assert!(got.get("error").is_some(), "{file}: {got}");
                }
                checked += 1;
            }
            Some("call") => {
                // A module call: `prompt` writes its first request's messages, or refuses, naming
                // what it cannot format yet (DSPy's special types, the XML and two-step adapters).
                let (code, stdout, stderr) = dspex(&["prompt", file]);
                if code == 0 {
                    let messages: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                    assert_eq!(
                        messages, fixture["expected_requests"][0]["messages"],
                        "{file}"
                    );
                    checked += 1;
                } else {
                    assert_eq!(code, 2, "{file}: {stderr}");
                    assert!(
                        stderr.contains(file)
                            && (stderr.contains("unknown type") || stderr.contains("`adapter`")),
                        "{file}: {stderr}"
                    );
                }
            }
            _ => {
                // Other kinds are not prompt/parse files: a clear refusal, not a crash.
                let (code, _, stderr) = dspex(&["prompt", file]);
                assert_eq!(code, 2, "{file}");
                assert!(!stderr.is_empty());
            }
        }
    }
    assert!(checked >= 70, "only {checked} fixtures checked");
    let (code, _, stderr) = dspex(&["prompt", "/nonexistent.json"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent.json"), "{stderr}");
}

/// `dspex replay` on every `call` fixture: what it prints is what DSPy sent and returned, or it
/// refuses with exit 2 naming what it cannot replay yet (DSPy's special types, native tool
/// calls, the TwoStepAdapter — issue 16).
#[test]
fn replay_prints_what_dspy_sent_and_returned() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/dspy");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if fixture["kind"] != "call" {
            continue;
        }
        let file = path.to_str().unwrap();
        let (code, stdout, stderr) = dspex(&["replay", file]);
        if code == 2 {
            assert!(
                stderr.contains(file)
                    && (stderr.contains("cannot replay yet") || stderr.contains("unknown type")),
                "{file}: {stderr}"
            );
            continue;
        }
        let got: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{file}: not one JSON object ({e}): {stdout}"));
        let requests = got["requests"].as_array().unwrap();
        let expected = fixture["expected_requests"].as_array().unwrap();
        assert_eq!(requests.len(), expected.len(), "{file}");
        for (ours, theirs) in requests.iter().zip(expected) {
            assert_eq!(ours["messages"], theirs["messages"], "{file}");
            assert_eq!(ours["options"], theirs["options"], "{file}");
        }
        match fixture["expected"].get("ok") {
            Some(ok) => {
                assert_eq!(code, 0, "{file}: {stderr}");
                assert_eq!(&got["outputs"], ok, "{file}");
            }
            None => {
                assert_eq!(code, 1, "{file}");
                assert_eq!(got["error"], fixture["expected"]["error"], "{file}");
            }
        }
        replayed += 1;
    }
    assert!(replayed >= 5, "only {replayed} call fixtures replayed");
    let (code, _, stderr) = dspex(&["replay", "/nonexistent.json"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent.json"), "{stderr}");
}

fn corpus(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn index_build_then_search_prints_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(
        dir.path(),
        "{\"id\": \"ada\", \"text\": \"Ada Lovelace wrote the first program.\"}\n\
         {\"id\": \"grace\", \"text\": \"Grace Hopper wrote the first compiler.\"}\n\
         {\"id\": \"alan\", \"text\": \"Alan Turing described a universal machine.\"}\n",
    );
    let out = dir.path().join("idx").display().to_string();
    let (code, stdout, stderr) = dspex(&["index", "build", &corpus, "--out", &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("indexed 3 documents"), "{stdout}");

    let (code, stdout, stderr) =
        dspex(&["index", "search", &out, "who wrote a compiler", "-k", "5"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["id"], "grace");
    assert_eq!(lines[0]["text"], "Grace Hopper wrote the first compiler.");
    assert!(lines[0]["score"].as_f64().unwrap() > lines[1]["score"].as_f64().unwrap());
    let keys: Vec<_> = lines[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["id", "score", "text"]);

    // A second build into the same directory needs --force.
    let (code, _, stderr) = dspex(&["index", "build", &corpus, "--out", &out]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, _, stderr) = dspex(&["index", "build", &corpus, "--out", &out, "--force"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn index_build_reports_bad_lines_by_number_and_skips_them_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(
        dir.path(),
        "{\"text\": \"one good line\"}\n{\"text\": \"two\"\n{\"text\": \"three good lines\"}\n",
    );
    let out = dir.path().join("idx").display().to_string();
    let (code, stdout, stderr) = dspex(&["index", "build", &corpus, "--out", &out]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(&format!("{corpus}:2: not JSON")),
        "{stderr}"
    );
    assert!(!std::path::Path::new(&out).exists());

    let (code, stdout, stderr) =
        dspex(&["index", "build", &corpus, "--out", &out, "--skip-bad-lines"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("skipped {corpus}:2: not JSON")),
        "{stderr}"
    );
    assert!(stdout.contains("indexed 2 documents"), "{stdout}");
    assert!(stdout.contains("1 lines skipped"), "{stdout}");
}

#[test]
fn index_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here").display().to_string();
    let (code, _, stderr) = dspex(&["index", "search", &missing, "query"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("no index at {missing}")),
        "{stderr}"
    );

    let empty = corpus(dir.path(), "\n");
    let out = dir.path().join("idx").display().to_string();
    let (code, _, stderr) = dspex(&["index", "build", &empty, "--out", &out]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("the corpus {empty} has no documents")),
        "{stderr}"
    );

    let (code, _, stderr) = dspex(&["index", "build", &empty, "--out", &out, "--b", "2"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--b"), "{stderr}");
}

#[test]
fn report_writes_a_page_and_refuses_bad_logs_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trials.jsonl");
    std::fs::write(
        &log,
        "{\"event\":\"trial\",\"trial\":0,\"score\":40.5,\"minibatch\":false,\"candidate\":{}}\n\
         {\"event\":\"trial\",\"trial\":1,\"score\":61,\"minibatch\":true,\"candidate\":{}}\n",
    )
    .unwrap();
    let page = dir.path().join("out.html");
    // A folder holding one log is read as that log.
    let (code, stdout, stderr) = dspex(&[
        "report",
        dir.path().to_str().unwrap(),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("wrote "), "{stdout}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(r#"data-trial="0" data-score="40.5" data-minibatch="false""#));
    assert!(html.contains(r#"data-trial="1" data-score="61" data-minibatch="true""#));

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"event\":\"trial\",\"trial\":0,\"score\":1}\n{oops}\n",
    )
    .unwrap();
    for (path, says) in [
        (bad, "bad.jsonl, line 2: not JSON"),
        (dir.path().join("missing.jsonl"), "missing.jsonl"),
    ] {
        let (code, _, stderr) = dspex(&[
            "report",
            path.to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}
