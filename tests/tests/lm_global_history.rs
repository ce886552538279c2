//! The process-wide history (DSPy's `GLOBAL_HISTORY` and `dspy.inspect_history`): every LM's
//! calls in the order they finished, bounded, and switchable off. One test in its own binary, as
//! the history is the process's.

use dspex::lm::{
    GLOBAL_HISTORY_SIZE, LM, LmRequest, clear_global_history, global_history, inspect_history,
    set_global_history_size,
};
use dspex::testing::MockLm;

fn lm(model: &str, base: &str, history_size: usize) -> LM {
    LM::builder(model)
        .api_base(base)
        .cache(false)
        .history_size(history_size)
        .build()
        .expect("the LM builds")
}

#[tokio::test]
async fn every_lms_calls_are_kept_in_order_bounded_and_can_be_turned_off() {
    assert_eq!(GLOBAL_HISTORY_SIZE, 10_000); // DSPy's MAX_HISTORY_SIZE
    let server = MockLm::start().await.expect("the mock LM starts");
    let base = server.api_base();
    let first = lm("openai/first", &base, 100);
    // Without a history of its own, as DSPy's LM with max_history_size=0: still recorded here.
    let second = lm("openai/second", &base, 0);
    clear_global_history();

    first.call(LmRequest::prompt("one")).await.unwrap();
    second.call(LmRequest::prompt("two")).await.unwrap();
    first.call(LmRequest::prompt("three")).await.unwrap();
    let models: Vec<String> = global_history(10).into_iter().map(|e| e.model).collect();
    assert_eq!(models, ["openai/first", "openai/second", "openai/first"]);
    assert!(second.history(10).is_empty());
    assert_eq!(first.history(10).len(), 2);

    // The last n, as DSPy prints them: every LM's, the newest last.
    let shown = inspect_history(2);
    let two = shown
        .find("User message:\n\ntwo")
        .expect("the second call is shown");
    let three = shown
        .find("User message:\n\nthree")
        .expect("the third call is shown");
    assert!(two < three, "{shown}");
    assert!(!shown.contains("User message:\n\none"), "{shown}");
    // The same rendering as one LM's own history for its calls.
    assert_eq!(first.inspect_history(1), inspect_history(1));

    // Bounded: shrinking drops the oldest; 0 keeps nothing from then on.
    set_global_history_size(1);
    assert_eq!(global_history(10).len(), 1);
    assert_eq!(global_history(10)[0].messages[0].content, "three");
    set_global_history_size(0);
    first.call(LmRequest::prompt("four")).await.unwrap();
    assert!(global_history(10).is_empty());
    assert_eq!(
        first.history(10).len(),
        3,
        "an LM's own history is not affected"
    );

    set_global_history_size(GLOBAL_HISTORY_SIZE);
    second.call(LmRequest::prompt("five")).await.unwrap();
    assert_eq!(global_history(10).len(), 1);
    clear_global_history();
    assert!(global_history(10).is_empty());
}
