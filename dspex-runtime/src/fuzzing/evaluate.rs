//! Target `results_file`: the reader [`ResultsFile::resume`](crate::evaluate::ResultsFile::resume)
//! runs on the results file a killed evaluation left — bytes cut anywhere, or damaged. Reading
//! never panics; a line it rejects is named (1-based, within the file); what it keeps is
//! consistent: the indices sorted and distinct, the kept length a prefix of whole lines, and
//! reading that prefix again (with the newline a whole unterminated last record lacks) gives
//! the same records and a clean end.

use crate::evaluate::results_file::{ReadError, Recorded, Tail, read_results};

/// Checks the results reader on `data`.
pub fn results_file(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    let rec = match read_results(data) {
        Ok(rec) => rec,
        Err(ReadError::Line { line, message }) => {
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            assert!(!message.is_empty());
            return;
        }
        Err(ReadError::Duplicate { index }) => {
            // The bytes, not text: values the reader skips (the example, the prediction) are
            // not checked for UTF-8, so the file need not be UTF-8 as a whole.
            let needle = index.to_string();
            assert!(
                data.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the duplicate index {index} is in the file"
            );
            return;
        }
        Err(ReadError::Io(message)) => panic!("reading bytes in memory failed: {message}"),
    };
    assert!(rec.entries.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(rec.n_errors <= rec.entries.len());
    assert!(rec.first_errors.len() <= rec.n_errors.min(5));
    let kept = usize::try_from(rec.valid_len).unwrap_or(usize::MAX);
    assert!(kept <= data.len());
    let _ = rec.sum.value();
    match rec.tail {
        Tail::Clean => assert_eq!(kept, data.len()),
        Tail::Partial => {
            assert!(kept == 0 || data[kept - 1] == b'\n');
            assert!(!data.ends_with(b"\n"), "a cut line has no newline");
            same_records(&rec, &data[..kept]);
        }
        Tail::Unterminated => {
            assert_eq!(kept, data.len());
            let mut whole = data.to_vec();
            whole.push(b'\n');
            same_records(&rec, &whole);
        }
    }
}

/// `bytes` read again give `rec`'s records, ending cleanly.
fn same_records(rec: &Recorded, bytes: &[u8]) {
    let again = read_results(bytes).expect("the kept prefix reads again");
    assert_eq!(again.tail, Tail::Clean);
    assert_eq!(again.entries, rec.entries);
    assert_eq!(again.n_errors, rec.n_errors);
    assert_eq!(again.valid_len, bytes.len() as u64);
    assert_eq!(
        again.sum.value().to_bits(),
        rec.sum.value().to_bits(),
        "the same sum"
    );
}

/// Seeds: a file of records (a failure, a non-finite score, escapes), the same cut inside its
/// last line, and without its last newline.
pub fn seeds() -> Vec<Vec<u8>> {
    use crate::evaluate::EvalFailure;
    use crate::evaluate::results_file::{example_hash, write_record};
    use crate::example::{Example, Prediction};

    let mut file = Vec::new();
    for (i, score, failure) in [
        (1u64, 1.0, None),
        (0, 0.5, None),
        (
            2,
            0.0,
            Some(EvalFailure::ProgramPanicked("boom \"x\"\n".into())),
        ),
        (3, f64::NAN, None),
    ] {
        let example = Example::new()
            .with("question", format!("What is {i}? é"))
            .with("answer", i)
            .with_inputs(["question"]);
        let prediction = Prediction::from_pairs([("answer", i)]);
        let prediction = failure.is_none().then_some(&prediction);
        let hash = example_hash(&example);
        if write_record(
            &mut file,
            i,
            hash,
            &example,
            prediction,
            score,
            failure.as_ref(),
        )
        .is_err()
        {
            continue;
        }
    }
    let cut = file[..file.len() - 30].to_vec();
    let unterminated = file[..file.len() - 1].to_vec();
    vec![file, cut, unterminated]
}
