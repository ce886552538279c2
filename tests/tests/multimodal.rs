//! DSPy's special input types through the typed API: `Image`, `list[Image]`, `Audio`, `File` and
//! `History` fields of `#[signature]` structs and `sig!` signatures, run by `Predict` against a
//! scripted LM. The requests must carry the content parts (and history turns) exactly where
//! DSPy 3.4.1 puts them — checked against the recorded `call_*` fixtures.

mod common;

use common::fixture;
use dspex::adapter::{JSONAdapter, XMLAdapter};
use dspex::lm::{LmRequest, ScriptedLM};
use dspex::module::{CallConfig, Predict};
use dspex::prelude::*;
use serde_json::{Value, json};

/// Answer the question about the image.
#[signature]
struct VQA {
    #[input]
    image: Image,
    #[input]
    question: String,
    #[output]
    answer: String,
}

#[signature(
    "history: History, question -> answer",
    instructions = "Reply to the user, using the conversation so far."
)]
struct Chat;

sig!(Compare: "images: list[dspy.Image] -> index: int");

fn messages(request: &LmRequest) -> Value {
    serde_json::to_value(&request.messages).unwrap()
}

/// The fixture's request messages.
fn expected_messages(name: &str) -> Value {
    fixture(name)["expected_requests"][0]["messages"].clone()
}

#[tokio::test]
async fn typed_image_field_sends_an_image_part_as_dspy_does() {
    let lm = ScriptedLM::new(["[[ ## answer ## ]]\nA cat.\n\n[[ ## completed ## ]]"]);
    let vqa = Predict::<VQA>::new().with_config(CallConfig::new().lm(lm.clone()));
    let out = vqa
        .forward(VQAInput {
            image: Image::url("https://example.com/cat.png").unwrap(),
            question: "What animal is this?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "A cat.");

    let sent = messages(&lm.requests()[0]);
    assert_eq!(
        sent[1]["content"],
        json!([
            {"type": "text", "text": "[[ ## image ## ]]\n"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "text", "text": "\n\n[[ ## question ## ]]\nWhat animal is this?\n\nRespond with the corresponding output fields, starting with the field `[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."},
        ])
    );
    // The whole request, system message included, is DSPy's.
    assert_eq!(sent, expected_messages("call_chat_image_url.json"));
}

#[tokio::test]
async fn image_in_a_demo_and_from_bytes() {
    let lm = ScriptedLM::new([
        "[[ ## answer ## ]]\nA bird.\n\n[[ ## completed ## ]]",
        "[[ ## answer ## ]]\nA tiny image.\n\n[[ ## completed ## ]]",
    ]);
    let mut vqa = Predict::<VQA>::new().with_config(CallConfig::new().lm(lm.clone()));
    vqa.params_mut().demos.push(Example::from_pairs([
        (
            "image",
            json!(Image::url("https://example.com/demo.png").unwrap()),
        ),
        ("question", json!("What is shown?")),
        ("answer", json!("A dog.")),
    ]));
    let out = vqa
        .forward(VQAInput {
            image: Image::url("https://example.com/q.png").unwrap(),
            question: "What is shown?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "A bird.");
    assert_eq!(
        messages(&lm.requests()[0]),
        expected_messages("call_chat_image_demo.json")
    );

    // A PNG given as bytes becomes the data URI DSPy sends.
    let fx = fixture("call_chat_image_data.json");
    let url = fx["inputs"]["image"]["url"].as_str().unwrap();
    let png = Image::data_uri(url).unwrap().bytes().unwrap();
    vqa.params_mut().demos.clear();
    vqa.forward(VQAInput {
        image: Image::from_bytes(&png, "image/png").unwrap(),
        question: "Describe it.".into(),
    })
    .await
    .unwrap();
    let sent = messages(&lm.requests()[1]);
    assert_eq!(sent[1]["content"][1]["image_url"]["url"], url);
    assert_eq!(sent, fx["expected_requests"][0]["messages"]);
}

#[tokio::test]
async fn image_read_from_a_file_is_a_data_uri_part() {
    let dir = std::env::temp_dir().join(format!("dspex-multimodal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pixel.jpg");
    std::fs::write(&path, [0xFF, 0xD8, 0xFF]).unwrap();
    let lm = ScriptedLM::new(["[[ ## answer ## ]]\nA pixel.\n\n[[ ## completed ## ]]"]);
    let vqa = Predict::<VQA>::new().with_config(CallConfig::new().lm(lm.clone()));
    vqa.forward(VQAInput {
        image: Image::from_file(&path).unwrap(),
        question: "What?".into(),
    })
    .await
    .unwrap();
    let sent = messages(&lm.requests()[0]);
    assert_eq!(
        sent[1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}})
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(
        Image::from_file(dir.join("pixel.jpg")),
        Err(dspex::MediaError::Read { .. })
    ));
}

#[tokio::test]
async fn list_of_images_is_sent_inside_the_json_list_as_dspy_does() {
    let lm = ScriptedLM::new(["[[ ## index ## ]]\n1\n\n[[ ## completed ## ]]"]);
    let mut compare = Predict::<Compare>::new().with_config(CallConfig::new().lm(lm.clone()));
    let fx = fixture("call_chat_image_list.json");
    compare
        .params_mut()
        .set_instructions(fx["signature"]["instructions"].as_str().unwrap());
    let out = compare
        .forward(CompareInput {
            images: vec![
                Image::url("https://example.com/a.png").unwrap(),
                Image::url("https://example.com/b.png").unwrap(),
            ],
        })
        .await
        .unwrap();
    assert_eq!(out.index, 1);
    let sent = messages(&lm.requests()[0]);
    let parts = sent[1]["content"].as_array().unwrap();
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text", "image_url", "text", "image_url", "text"]);
    assert_eq!(parts[2]["text"], "\", \"");
    // The fixture's field has a description; the rest of the request is the same.
    assert_eq!(sent[1], fx["expected_requests"][0]["messages"][1]);
}

#[tokio::test]
async fn json_and_xml_adapters_put_the_image_part_in_place() {
    let lm = ScriptedLM::new(["{\"answer\": \"cat\"}"]);
    let vqa =
        Predict::<VQA>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(JSONAdapter));
    let input = VQAInput {
        image: Image::url("https://example.com/cat.png").unwrap(),
        question: "What animal?".into(),
    };
    assert_eq!(vqa.forward(input.clone()).await.unwrap().answer, "cat");
    assert_eq!(
        messages(&lm.requests()[0]),
        expected_messages("call_json_image_url.json")
    );

    let lm = ScriptedLM::new(["<answer>\ncat\n</answer>"]);
    let vqa =
        Predict::<VQA>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(XMLAdapter));
    assert_eq!(vqa.forward(input).await.unwrap().answer, "cat");
    let sent = messages(&lm.requests()[0]);
    assert_eq!(
        sent[1]["content"],
        json!([
            {"type": "text", "text": "<image>\n"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "text", "text": "\n</image>\n\n<question>\nWhat animal?\n</question>\n\nRespond with the corresponding output fields wrapped in XML tags `<answer>`."},
        ])
    );
}

#[tokio::test]
async fn typed_history_field_becomes_user_and_assistant_turns() {
    let lm = ScriptedLM::new(["[[ ## answer ## ]]\n105 km2\n\n[[ ## completed ## ]]"]);
    let chat = Predict::<Chat>::new().with_config(CallConfig::new().lm(lm.clone()));
    let mut history = History::new();
    history
        .push_turn(
            json!({"question": "What is the capital of France?"}),
            ChatOutput {
                answer: "Paris".into(),
            },
        )
        .unwrap();
    history
        .push(json!({"question": "And its population?", "answer": "About two million."}))
        .unwrap();
    let out = chat
        .forward(ChatInput {
            history,
            question: "And its area?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "105 km2");

    let sent = messages(&lm.requests()[0]);
    let roles: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    assert_eq!(
        sent[2]["content"],
        "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]\n"
    );
    assert_eq!(sent, expected_messages("call_chat_history.json"));

    // An empty history adds no turns; the history field is still not printed.
    let lm = ScriptedLM::new(["[[ ## answer ## ]]\nHello.\n\n[[ ## completed ## ]]"]);
    let chat = Predict::<Chat>::new().with_config(CallConfig::new().lm(lm.clone()));
    chat.forward(ChatInput {
        history: History::new(),
        question: "Hi?".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        messages(&lm.requests()[0]),
        expected_messages("call_chat_history_empty.json")
    );
}

#[tokio::test]
async fn history_turn_missing_an_output_shows_none_as_dspy_does() {
    let lm = ScriptedLM::new(["{\"answer\": \"ok\"}"]);
    let chat =
        Predict::<Chat>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(JSONAdapter));
    let mut history = History::new();
    history.push(json!({"question": "Only asked."})).unwrap();
    history.push(json!({"answer": "Only answered."})).unwrap();
    chat.forward(ChatInput {
        history,
        question: "Now?".into(),
    })
    .await
    .unwrap();
    let sent = messages(&lm.requests()[0]);
    // DSPy: a turn without inputs has no user message; a missing output is `null` in JSON.
    assert_eq!(
        sent[1],
        json!({"role": "user", "content": "[[ ## question ## ]]\nOnly asked.\n\nRespond with a JSON object in the following order of fields: `answer`."})
    );
    assert_eq!(
        sent[2],
        json!({"role": "assistant", "content": "{\n  \"answer\": null\n}"})
    );
    assert_eq!(
        sent[3],
        json!({"role": "assistant", "content": "{\n  \"answer\": \"Only answered.\"\n}"})
    );
    assert_eq!(sent[4]["role"], "user");
    assert_eq!(sent.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn audio_and_file_fields_send_their_parts() {
    sig!(Transcribe: "audio: Audio -> text", instructions = "Transcribe the audio.");
    sig!(Summarize: "document: File -> summary", instructions = "Summarize the attached document.");

    let fx = fixture("call_chat_audio.json");
    let lm = ScriptedLM::new(["[[ ## text ## ]]\nhello world\n\n[[ ## completed ## ]]"]);
    let transcribe = Predict::<Transcribe>::new().with_config(CallConfig::new().lm(lm.clone()));
    let input = &fx["inputs"]["audio"];
    let audio = Audio::new(
        input["data"].as_str().unwrap(),
        input["audio_format"].as_str().unwrap(),
    )
    .unwrap();
    let out = transcribe.forward(TranscribeInput { audio }).await.unwrap();
    assert_eq!(out.text, "hello world");
    assert_eq!(
        messages(&lm.requests()[0]),
        fx["expected_requests"][0]["messages"]
    );

    let fx = fixture("call_chat_file.json");
    let lm = ScriptedLM::new(["[[ ## summary ## ]]\nA tiny PDF.\n\n[[ ## completed ## ]]"]);
    let summarize = Predict::<Summarize>::new().with_config(CallConfig::new().lm(lm.clone()));
    let input = &fx["inputs"]["document"];
    let document = File::data_uri(
        input["file_data"].as_str().unwrap(),
        input["filename"].as_str(),
    )
    .unwrap();
    summarize
        .forward(SummarizeInput { document })
        .await
        .unwrap();
    let sent = messages(&lm.requests()[0]);
    assert_eq!(
        sent[1]["content"][1],
        json!({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQgdGlueQ==", "filename": "report.pdf"}})
    );
    assert_eq!(sent, fx["expected_requests"][0]["messages"]);
}

#[test]
fn special_types_in_every_signature_form() {
    assert_eq!(VQA::input_fields()[0].dspy_type(), "Image");
    assert_eq!(Chat::input_fields()[0].dspy_type(), "History");
    assert_eq!(Compare::input_fields()[0].dspy_type(), "list[Image]");
    let dynamic = DynSignature::parse("image: Image, clips: list[dspy.Audio], doc: Optional[File], history: History, question -> answer").unwrap();
    let types: Vec<String> = dynamic.inputs().iter().map(|f| f.dspy_type()).collect();
    assert_eq!(
        types,
        [
            "Image",
            "list[Audio]",
            "Union[File, NoneType]",
            "History",
            "str"
        ]
    );
    assert_eq!(dynamic.inputs()[0], VQA::input_fields()[0]);
}
