//! [`KNN`]: the training examples nearest to an input, by embedding (DSPy's `dspy.KNN`), and
//! [`KNNFewShot`], which bootstraps demos from them on every call.

use super::{BootstrapFewShot, DemoConfig, DemoKnobs, Optimizable, Optimizer};
use crate::error::{Error, Result};
use crate::example::Example;
use crate::lm::Embedder;
use crate::program::{Module, Program};
use crate::pycompat::py::{from_json, py_str};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The `k` training examples most similar to an input: every example's input fields are embedded
/// once (as `"key: value | key: value"`, DSPy's text), and a query's neighbours are those with
/// the largest dot product with its own embedding, most similar first. The dot product is raw,
/// as in DSPy: normalize in the embedder if cosine similarity is wanted.
#[derive(Clone)]
pub struct KNN {
    k: usize,
    trainset: Arc<[Example]>,
    vectors: Arc<[Vec<f32>]>,
    embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for KNN {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KNN")
            .field("k", &self.k)
            .field("trainset", &self.trainset.len())
            .finish_non_exhaustive()
    }
}

/// `key: value | key: value` over `fields`, values as Python's `str()` prints them.
fn knn_text<'a>(fields: impl Iterator<Item = (&'a String, &'a Value)>) -> String {
    fields
        .map(|(k, v)| format!("{k}: {}", py_str(&from_json(v))))
        .collect::<Vec<_>>()
        .join(" | ")
}

impl KNN {
    /// Embeds `trainset` (each example's input fields; every example needs input keys).
    pub async fn new(
        k: usize,
        trainset: Vec<Example>,
        embedder: Arc<dyn Embedder>,
    ) -> Result<Self> {
        let mut texts = Vec::with_capacity(trainset.len());
        for (i, ex) in trainset.iter().enumerate() {
            let Some(keys) = ex.input_keys() else {
                return Err(Error::step(
                    format!("building a KNN over the trainset (example {i})"),
                    "the example has no input keys; call `with_inputs(...)` on every example",
                ));
            };
            texts.push(knn_text(
                ex.as_map().iter().filter(|(key, _)| keys.contains(*key)),
            ));
        }
        let vectors = embedder.embed(&texts).await?;
        if vectors.len() != trainset.len() {
            return Err(Error::step(
                "building a KNN over the trainset",
                format!(
                    "the embedder returned {} vectors for {} examples",
                    vectors.len(),
                    trainset.len()
                ),
            ));
        }
        Ok(KNN {
            k,
            trainset: trainset.into(),
            vectors: vectors.into(),
            embedder,
        })
    }

    /// How many neighbours it returns.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The `k` training examples nearest to `inputs` (its fields in order), most similar first;
    /// among equal scores, the later example comes first, as numpy's `argsort` leaves them for
    /// DSPy.
    pub async fn neighbours(&self, inputs: &Map<String, Value>) -> Result<Vec<Example>> {
        let query = knn_text(inputs.iter());
        let vector = self
            .embedder
            .embed(std::slice::from_ref(&query))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::step("embedding a KNN query", "the embedder returned no vector")
            })?;
        let scores: Vec<f32> = self
            .vectors
            .iter()
            .map(|v| v.iter().zip(&vector).map(|(a, b)| a * b).sum())
            .collect();
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Ascending and stable, then the last k reversed: DSPy's `argsort(scores)[-k:][::-1]`.
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        Ok(order
            .iter()
            .rev()
            .take(self.k)
            .map(|&i| self.trainset[i].clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::embedder_fn;

    /// A bag-of-letters embedding: similar texts share letters.
    fn letters(text: &str) -> Vec<f32> {
        let mut v = [0.0f32; 26];
        for c in text.chars().filter(char::is_ascii_lowercase) {
            v[(c as u8 - b'a') as usize] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter().map(|x| x / norm).collect()
    }

    #[tokio::test]
    async fn nearest_first_over_input_fields_only() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let embedder = Arc::new(embedder_fn(move |t: &str| {
            log.lock().unwrap().push(t.to_string());
            letters(t)
        }));
        let trainset = ["apple pie", "banana bread", "cherry tart", "apple crumble"]
            .iter()
            .map(|q| {
                Example::new()
                    .with("question", *q)
                    .with("answer", "zzz")
                    .with_inputs(["question"])
            })
            .collect();
        let knn = KNN::new(2, trainset, embedder).await.unwrap();
        assert_eq!(seen.lock().unwrap()[0], "question: apple pie");
        let query: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"question": "apple"})).unwrap();
        let near = knn.neighbours(&query).await.unwrap();
        let questions: Vec<&str> = near
            .iter()
            .map(|e| e.get_str("question").unwrap())
            .collect();
        assert_eq!(questions.len(), 2);
        assert!(
            questions.iter().all(|q| q.starts_with("apple")),
            "{questions:?}"
        );
    }

    #[tokio::test]
    async fn knn_few_shot_bootstraps_from_the_neighbours_on_every_call() {
        use crate::lm::ScriptedLM;
        use crate::module::{CallConfig, DynPredict};
        use crate::signature::DynSignature;
        use serde_json::json;

        let lm = ScriptedLM::from_fields([json!({"answer": "ok"})]).repeat_last();
        let student = DynPredict::new(DynSignature::parse("question -> answer").unwrap())
            .with_config(CallConfig::new().lm(lm.clone()));
        let trainset = ["apple pie", "banana bread", "cherry tart", "apple crumble"]
            .iter()
            .map(|q| {
                Example::new()
                    .with("question", *q)
                    .with("answer", "ok")
                    .with_inputs(["question"])
            })
            .collect();
        let knn = KNNFewShot::new(
            2,
            trainset,
            Arc::new(embedder_fn(letters)),
            BootstrapFewShot::new().max_labeled_demos(0),
        )
        .await
        .unwrap();
        let program = knn.compile(student);
        let out = program
            .forward(Example::new().with("question", "apple"))
            .await
            .unwrap();
        assert_eq!(out.get_str("answer"), Some("ok"));
        // Two teacher runs on the neighbours, then the answer with both as demos.
        assert_eq!(lm.calls(), 3);
        let last = &lm.messages()[2];
        let prompt: String = last.iter().map(|m| m.content.text()).collect();
        assert!(prompt.contains("apple pie") && prompt.contains("apple crumble"));
        assert!(!prompt.contains("banana"));
        // Nothing is kept between calls: the saved state has no demos.
        assert!(program.named_predictors()[0].1.demos.is_empty());
    }

    #[tokio::test]
    async fn ties_put_later_examples_first_and_inputs_are_required() {
        let flat = Arc::new(embedder_fn(|_: &str| vec![1.0]));
        let trainset: Vec<Example> = (0..3)
            .map(|i| Example::new().with("q", i).with_inputs(["q"]))
            .collect();
        let knn = KNN::new(2, trainset, flat.clone()).await.unwrap();
        let near = knn.neighbours(&Map::new()).await.unwrap();
        assert_eq!(near[0].get("q"), Some(&Value::from(2)));
        assert_eq!(near[1].get("q"), Some(&Value::from(1)));
        let err = KNN::new(1, vec![Example::new().with("q", 1)], flat)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("with_inputs"), "{err}");
    }
}

/// DSPy's `KNNFewShot`: a program that, on every call, bootstraps demos from the `k` training
/// examples nearest to its input (a fresh [`BootstrapFewShot`] compile of the student on
/// them) and answers with the compiled copy. Nothing is learned ahead of time, so the saved
/// state of the result has no demos, as in DSPy; every call pays for the teacher runs.
#[derive(Debug, Clone)]
pub struct KNNFewShot {
    knn: KNN,
    bootstrap: BootstrapFewShot,
}

impl KNNFewShot {
    /// Embeds `trainset` now; `bootstrap` is the BootstrapFewShot each call compiles with.
    pub async fn new(
        k: usize,
        trainset: Vec<Example>,
        embedder: Arc<dyn Embedder>,
        bootstrap: BootstrapFewShot,
    ) -> Result<Self> {
        Ok(KNNFewShot {
            knn: KNN::new(k, trainset, embedder).await?,
            bootstrap,
        })
    }

    /// The program that bootstraps per call around `student`.
    pub fn compile<P: Optimizable>(&self, student: P) -> KNNFewShotProgram<P> {
        KNNFewShotProgram {
            knn: self.knn.clone(),
            bootstrap: self.bootstrap.clone(),
            student,
        }
    }
}

impl DemoKnobs for KNNFewShot {
    /// The demo knobs of the BootstrapFewShot each call compiles with.
    fn demo_config(&self) -> &DemoConfig {
        self.bootstrap.demo_config()
    }

    fn demo_config_mut(&mut self) -> &mut DemoConfig {
        self.bootstrap.demo_config_mut()
    }
}

/// What [`KNNFewShot::compile`] returns: the student, run with demos bootstrapped from the
/// neighbours of each input.
#[derive(Debug, Clone)]
pub struct KNNFewShotProgram<P> {
    knn: KNN,
    bootstrap: BootstrapFewShot,
    student: P,
}

impl<P> Program for KNNFewShotProgram<P>
where
    P: Optimizable + Program,
    P::Input: Serialize,
{
    type Input = P::Input;
    type Output = P::Output;

    async fn forward(&self, input: P::Input) -> Result<P::Output> {
        let fields = Example::from_typed(&input)?.into_map();
        let neighbours = self.knn.neighbours(&fields).await?;
        let compiled = self
            .bootstrap
            .compile(self.student.clone(), &neighbours)
            .await?;
        compiled.forward(input).await
    }
}

crate::program::delegate_module!(impl[P: Module] KNNFewShotProgram<P> => student);
