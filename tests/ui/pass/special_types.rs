//! DSPy's special types as field types in every signature form: the field struct, the string
//! form (plain names from the prelude and `dspy.` paths), `sig!`, and options of them.

use dspex::prelude::*;

/// Answer about the image, given the conversation so far.
#[signature]
pub struct VisualChat {
    #[input]
    image: Image,
    #[input]
    history: History,
    #[input]
    clip: Option<Audio>,
    #[input]
    attachments: Vec<File>,
    #[output]
    answer: String,
}

#[signature("photos: list[Image], note: dspy.Audio, doc: dspy.File -> caption")]
pub struct Caption;

sig!(pub Converse: "history: dspy.History, question -> answer");

fn main() {
    let types = |fields: &[dspex::FieldSpec]| -> Vec<String> {
        fields.iter().map(|f| f.dspy_type()).collect()
    };
    assert_eq!(
        types(VisualChat::input_fields()),
        ["Image", "History", "Union[Audio, NoneType]", "list[File]"]
    );
    assert_eq!(types(Caption::input_fields()), ["list[Image]", "Audio", "File"]);
    assert_eq!(types(Converse::input_fields()), ["History", "str"]);

    // The generated input structs hold dspex's types.
    let input = CaptionInput {
        photos: vec![Image::url("https://example.com/a.png").unwrap()],
        note: Audio::from_bytes(b"RIFF", "wav"),
        doc: File::from_file_id("file-1", None),
    };
    let _: VisualChatInput = VisualChatInput {
        image: input.photos[0].clone(),
        history: History::new(),
        clip: None,
        attachments: vec![input.doc.clone()],
    };
    let _ = ConverseInput {
        history: History::new(),
        question: "Hi?".into(),
    };
}
