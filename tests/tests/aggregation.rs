//! BestOfN, Refine, MultiChainComparison and majority through the facade, over a pipeline of
//! typed modules: predictor names, sampling parameters that reach the LM, and the prompts DSPy
//! 3.4.1 sends for the same program.

use dspex::lm::ScriptedLM;
use dspex::module::{AttemptsError, ChainOfThought, CompareInput, Predict, Reasoned};
use dspex::prelude::*;
use dspex::settings::{Settings, Trace, with_settings};
use serde_json::json;

#[signature("question -> search_query")]
struct GenerateQuery;

#[signature("question, search_query -> answer")]
struct Answer;

#[signature("question -> answer")]
struct QA;

/// DSPy's
/// `class Pipeline(dspy.Module)` with `generate_query = ChainOfThought("question -> search_query")`
/// and `answer = Predict("question, search_query -> answer")`.
#[derive(Module)]
struct Pipeline {
    generate_query: ChainOfThought<GenerateQuery>,
    answer: Predict<Answer>,
}

impl Pipeline {
    fn new() -> Self {
        Pipeline {
            generate_query: ChainOfThought::new(),
            answer: Predict::new(),
        }
    }
}

impl Program for Pipeline {
    type Input = GenerateQueryInput;
    type Output = AnswerOutput;

    async fn forward(&self, input: GenerateQueryInput) -> dspex::Result<AnswerOutput> {
        let query = self.generate_query.forward(input.clone()).await?;
        self.answer
            .forward(AnswerInput {
                question: input.question,
                search_query: query.output.search_query,
            })
            .await
    }
}

fn paris(_: &GenerateQueryInput, out: &AnswerOutput) -> f64 {
    if out.answer == "Paris" { 1.0 } else { 0.5 }
}

fn question() -> GenerateQueryInput {
    GenerateQueryInput {
        question: "Capital of France?".into(),
    }
}

fn names(module: &impl Module) -> Vec<String> {
    module
        .named_predictors()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Captured from DSPy 3.4.1 (`Refine` over the same pipeline, DummyLM).
const FEEDBACK_USER: &str = concat!(
    "[[ ## program_code ## ]]\n",
    "PROGRAM\n",
    "\n",
    "[[ ## modules_defn ## ]]\n",
    "--------------------------------------------------------------------------------\n",
    "Module generate_query.predict\n",
    "\tInput Fields:\n",
    "\t\t1. `question` (str):\n",
    "\tOutput Fields:\n",
    "\t\t1. `reasoning` (str): \n",
    "\t\t2. `search_query` (str):\n",
    "\tOriginal Instructions: \n",
    "\t\tGiven the fields `question`, produce the fields `search_query`.\n",
    "--------------------------------------------------------------------------------\n",
    "Module answer\n",
    "\tInput Fields:\n",
    "\t\t1. `question` (str): \n",
    "\t\t2. `search_query` (str):\n",
    "\tOutput Fields:\n",
    "\t\t1. `answer` (str):\n",
    "\tOriginal Instructions: \n",
    "\t\tGiven the fields `question`, `search_query`, produce the fields `answer`.\n",
    "--------------------------------------------------------------------------------\n",
    "\n",
    "[[ ## program_inputs ## ]]\n",
    "{\n",
    "  \"question\": \"Capital of France?\"\n",
    "}\n",
    "\n",
    "[[ ## program_trajectory ## ]]\n",
    "[\n",
    "  {\n",
    "    \"module_name\": \"generate_query.predict\",\n",
    "    \"inputs\": {\n",
    "      \"question\": \"Capital of France?\"\n",
    "    },\n",
    "    \"outputs\": {\n",
    "      \"reasoning\": \"r1\",\n",
    "      \"search_query\": \"capital France\"\n",
    "    }\n",
    "  },\n",
    "  {\n",
    "    \"module_name\": \"answer\",\n",
    "    \"inputs\": {\n",
    "      \"question\": \"Capital of France?\",\n",
    "      \"search_query\": \"capital France\"\n",
    "    },\n",
    "    \"outputs\": {\n",
    "      \"answer\": \"Lyon\"\n",
    "    }\n",
    "  }\n",
    "]\n",
    "\n",
    "[[ ## program_outputs ## ]]\n",
    "{\n",
    "  \"answer\": \"Lyon\"\n",
    "}\n",
    "\n",
    "[[ ## reward_code ## ]]\n",
    "REWARD\n",
    "\n",
    "[[ ## target_threshold ## ]]\n",
    "1.0\n",
    "\n",
    "[[ ## reward_value ## ]]\n",
    "0.5\n",
    "\n",
    "[[ ## module_names ## ]]\n",
    "[\n",
    "  \"generate_query.predict\",\n",
    "  \"answer\"\n",
    "]\n",
    "\n",
    "Respond with the corresponding output fields, starting with the field `[[ ## discussion ## ]]`, then `[[ ## advice ## ]]` (must be formatted as a valid Python dict[str, str]), and then ending with the marker for `[[ ## completed ## ]]`.",
);

/// Captured from DSPy 3.4.1 (`Refine` over the same pipeline, DummyLM).
const HINTED_QUERY_USER: &str = concat!(
    "[[ ## question ## ]]\n",
    "Capital of France?\n",
    "\n",
    "[[ ## hint_ ## ]]\n",
    "N/A\n",
    "\n",
    "Respond with the corresponding output fields, starting with the field `[[ ## reasoning ## ]]`, then `[[ ## search_query ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`.",
);

/// Captured from DSPy 3.4.1 (`Refine` over the same pipeline, DummyLM).
const HINTED_ANSWER_SYSTEM: &str = concat!(
    "Your input fields are:\n",
    "1. `question` (str): \n",
    "2. `search_query` (str): \n",
    "3. `hint_` (str): A hint to the module from an earlier run\n",
    "Your output fields are:\n",
    "1. `answer` (str):\n",
    "All interactions will be structured in the following way, with the appropriate values filled in.\n",
    "\n",
    "[[ ## question ## ]]\n",
    "{question}\n",
    "\n",
    "[[ ## search_query ## ]]\n",
    "{search_query}\n",
    "\n",
    "[[ ## hint_ ## ]]\n",
    "{hint_}\n",
    "\n",
    "[[ ## answer ## ]]\n",
    "{answer}\n",
    "\n",
    "[[ ## completed ## ]]\n",
    "In adhering to this structure, your objective is: \n",
    "        Given the fields `question`, `search_query`, produce the fields `answer`.",
);

/// Captured from DSPy 3.4.1 (`Refine` over the same pipeline, DummyLM).
const HINTED_ANSWER_USER: &str = concat!(
    "[[ ## question ## ]]\n",
    "Capital of France?\n",
    "\n",
    "[[ ## search_query ## ]]\n",
    "France capital city\n",
    "\n",
    "[[ ## hint_ ## ]]\n",
    "Say Paris.\n",
    "\n",
    "Respond with the corresponding output fields, starting with the field `[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`.",
);

#[tokio::test]
async fn refine_over_a_pipeline_sends_dspys_prompts() {
    let lm = ScriptedLM::from_fields([
        json!({"reasoning": "r1", "search_query": "capital France"}),
        json!({"answer": "Lyon"}),
        json!({"discussion": "d", "advice": {"answer": "Say Paris."}}),
        json!({"reasoning": "r2", "search_query": "France capital city"}),
        json!({"answer": "Paris"}),
    ]);
    let refine = Refine::new(Pipeline::new(), 2, paris, 1.0)
        .program_code("PROGRAM")
        .reward_code("REWARD");
    assert_eq!(
        names(&refine),
        ["module.generate_query.predict", "module.answer"]
    );
    let out = with_settings(Settings::new().lm(lm.clone()), refine.forward(question()))
        .await
        .unwrap();
    assert_eq!(out.answer, "Paris");
    let requests = lm.requests();
    assert_eq!(requests.len(), 5);
    assert_eq!(requests[2].messages[1].content, FEEDBACK_USER);
    // The predictor the advice does not name gets `N/A`.
    assert_eq!(requests[3].messages[1].content, HINTED_QUERY_USER);
    assert_eq!(requests[4].messages[0].content, HINTED_ANSWER_SYSTEM);
    assert_eq!(requests[4].messages[1].content, HINTED_ANSWER_USER);
    let rollouts: Vec<_> = requests.iter().map(|r| r.rollout_id).collect();
    assert_eq!(rollouts, [Some(0), Some(0), None, Some(1), Some(1)]);
}

#[tokio::test]
async fn best_of_n_over_a_pipeline() {
    let lm = ScriptedLM::from_fields([
        json!({"reasoning": "r1", "search_query": "q1"}),
        json!({"answer": "Lyon"}),
        json!({"reasoning": "r2", "search_query": "q2"}),
        json!({"answer": "Paris"}),
    ]);
    let best = BestOfN::new(Pipeline::new(), 3, paris, 1.0);
    assert_eq!(
        names(&best),
        ["module.generate_query.predict", "module.answer"]
    );
    let trace = Trace::new();
    let settings = Settings::new().lm(lm.clone()).trace(trace.clone());
    let out = with_settings(settings, best.forward(question()))
        .await
        .unwrap();
    assert_eq!(out.answer, "Paris");
    let sampling: Vec<_> = lm
        .requests()
        .iter()
        .map(|r| (r.temperature, r.rollout_id))
        .collect();
    assert_eq!(
        sampling,
        [
            (Some(1.0), Some(0)),
            (Some(1.0), Some(0)),
            (Some(1.0), Some(1)),
            (Some(1.0), Some(1)),
        ]
    );
    // The trace in scope receives the chosen attempt's two calls, in order.
    let entries = trace.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].outputs.get_str("search_query"), Some("q2"));
    assert_eq!(entries[1].outputs.get_str("answer"), Some("Paris"));

    // Nothing to say: every attempt fails, and the error keeps each failure.
    let silent = ScriptedLM::new(Vec::<String>::new());
    let err = with_settings(Settings::new().lm(silent), best.forward(question()))
        .await
        .unwrap_err();
    let failures = AttemptsError::find(&err).unwrap().failures();
    assert_eq!(
        failures.iter().map(|f| f.rollout_id).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[tokio::test]
async fn chain_of_thought_samples_compared_then_voted() {
    // Three reasoning attempts from a ChainOfThought, compared by MultiChainComparison;
    // majority votes over the same attempts.
    let lm = ScriptedLM::from_fields([
        json!({"reasoning": "A", "answer": "Paris"}),
        json!({"reasoning": "B", "answer": "Lyon"}),
        json!({"reasoning": "C", "answer": "paris."}),
        json!({"rationale": "Most say Paris.", "answer": "Paris"}),
    ]);
    let settings = Settings::new().lm(lm.clone());
    let cot = ChainOfThought::<QA>::new();
    let input = QAInput {
        question: "Capital of France?".into(),
    };
    let mut attempts: Vec<Reasoned<QAOutput>> = Vec::new();
    for _ in 0..3 {
        let attempt = with_settings(settings.clone(), cot.forward(input.clone()))
            .await
            .unwrap();
        attempts.push(attempt);
    }
    let records: Vec<Prediction> = attempts
        .iter()
        .map(|a| Prediction::from_typed(a).unwrap())
        .collect();
    let voted = majority(records.iter().map(Prediction::as_map), None).unwrap();
    assert_eq!(voted.get_str("answer"), Some("Paris"));
    assert_eq!(voted.get_str("reasoning"), Some("A"));

    let mcc = MultiChainComparison::<QA>::new(3).unwrap();
    assert_eq!(names(&mcc), ["predict"]);
    let out = with_settings(
        settings,
        mcc.forward(CompareInput {
            completions: attempts,
            input,
        }),
    )
    .await
    .unwrap();
    assert_eq!(out.rationale, "Most say Paris.");
    assert_eq!(out.output.answer, "Paris");
    let last = lm.requests().pop().unwrap();
    assert_eq!(last.temperature, Some(0.7));
    assert!(last.messages[1].content.text().contains(
        "[[ ## reasoning_attempt_2 ## ]]\n«I'm trying to B I'm not sure but my prediction is Lyon»"
    ));
}
