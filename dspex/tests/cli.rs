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
