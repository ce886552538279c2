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
            _ => {
                // Other kinds are not prompt/parse files: a clear refusal, not a crash.
                let (code, _, stderr) = dspex(&["prompt", file]);
                assert_eq!(code, 2, "{file}");
                assert!(!stderr.is_empty());
            }
        }
    }
    assert!(checked >= 69, "only {checked} fixtures checked");
    let (code, _, stderr) = dspex(&["prompt", "/nonexistent.json"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent.json"), "{stderr}");
}
