//! The MIME type of a file from its extension, as DSPy finds it with Python's
//! `mimetypes.guess_type`.
//!
//! A small fixed table rather than a crate such as `mime_guess`: Python's answer depends on the
//! machine (it reads `/etc/mime.types` on top of its built-in map), and `mime_guess` disagrees
//! with both on types DSPy users meet (`.wav` is `audio/x-wav` in Python, `audio/wav` in
//! `mime_guess`; the audio format DSPy derives from it is the subtype). The table holds
//! CPython 3.11's built-in entries for common image, audio and document types, plus the entries
//! a stock Debian/Ubuntu `mime.types` adds for types CPython lacks (`.webp`, `.flac`, `.ogg`,
//! `.m4a`, `.md`, the Office Open XML formats), which is what DSPy sees on such a machine.
//! Extensions are matched case-insensitively, as Python does.

/// `(extension without the dot, MIME type)`, lowercase.
const TABLE: &[(&str, &str)] = &[
    // Images.
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("jpe", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("bmp", "image/bmp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("ico", "image/vnd.microsoft.icon"),
    ("svg", "image/svg+xml"),
    ("heic", "image/heic"),
    ("heif", "image/heif"),
    ("avif", "image/avif"),
    // Audio.
    ("wav", "audio/x-wav"),
    ("mp3", "audio/mpeg"),
    ("mp2", "audio/mpeg"),
    ("aac", "audio/aac"),
    ("ogg", "audio/ogg"),
    ("oga", "audio/ogg"),
    ("opus", "audio/ogg"),
    ("flac", "audio/flac"),
    ("m4a", "audio/mp4"),
    ("aif", "audio/x-aiff"),
    ("aiff", "audio/x-aiff"),
    ("aifc", "audio/x-aiff"),
    ("au", "audio/basic"),
    ("snd", "audio/basic"),
    // Documents and text.
    ("pdf", "application/pdf"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("tsv", "text/tab-separated-values"),
    ("json", "application/json"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("md", "text/markdown"),
    ("xml", "text/xml"),
    ("py", "text/x-python"),
    ("js", "text/javascript"),
    ("rtf", "application/rtf"),
    ("zip", "application/zip"),
    ("doc", "application/msword"),
    ("xls", "application/vnd.ms-excel"),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    // Video (a `File` may carry one).
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("mov", "video/quicktime"),
];

/// The MIME type for `path`'s extension, or `None` when it has none or it is not in the table.
pub(crate) fn guess(path: &std::path::Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    TABLE.iter().find(|(e, _)| *e == ext).map(|(_, mime)| *mime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn common_types_as_python_guesses_them() {
        assert_eq!(guess(Path::new("a/cat.png")), Some("image/png"));
        assert_eq!(guess(Path::new("CAT.JPG")), Some("image/jpeg"));
        assert_eq!(guess(Path::new("x.wav")), Some("audio/x-wav"));
        assert_eq!(guess(Path::new("x.mp3")), Some("audio/mpeg"));
        assert_eq!(guess(Path::new("report.pdf")), Some("application/pdf"));
        assert_eq!(guess(Path::new("noext")), None);
        assert_eq!(guess(Path::new("x.unknownext")), None);
    }
}
