//! [`HybridRetriever`]: several retrievers' rankings fused by reciprocal rank fusion.

use super::{Passage, RetrieveError, Retriever};
use futures_util::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use tracing::Instrument;

/// The name errors give this retriever.
const NAME: &str = "hybrid retriever";

/// One retriever of a hybrid and its weight.
struct Source {
    retriever: Box<dyn Retriever>,
    weight: f64,
}

/// Hybrid search: asks every retriever it holds (the BM25 index and an
/// [`EmbeddingsRetriever`](super::EmbeddingsRetriever), say — any [`Retriever`]s) for its
/// candidates and fuses their rankings by reciprocal rank fusion (Cormack, Clarke and Büttcher,
/// 2009): a passage scores `Σ weight / (rrf_k + rank)` over the retrievers that returned it, with
/// `rank` counted from 1 and `rrf_k` 60 by default.
///
/// Passages are the same passage when their ids are equal, so the retrievers should index the
/// same corpus with the same ids; a fused passage keeps the text and extra fields of the first
/// retriever (in the order they were added) that returned it, and its [`Passage::score`] is the
/// fused score. Equal scores are ordered by the best single rank the passage had, then by where it
/// was first seen (retriever order, then rank), so the order is deterministic.
///
/// The hybrid owns its retrievers; add an [`Arc`](std::sync::Arc) of one to keep using it
/// elsewhere too.
///
/// ```
/// use dspex_runtime::retrieve::{HybridRetriever, Passage, RetrieveError, Retriever};
/// use futures_util::future::BoxFuture;
///
/// /// Returns fixed ids, best first.
/// struct Ranking(&'static [&'static str]);
/// impl Retriever for Ranking {
///     fn retrieve<'a>(&'a self, _query: &'a str, k: usize)
///         -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
///         let hits = self.0.iter().take(k).map(|id| Passage::new(*id, format!("text {id}"), 1.0));
///         Box::pin(std::future::ready(Ok(hits.collect())))
///     }
/// }
///
/// let hybrid = HybridRetriever::new()
///     .with(Ranking(&["a", "b", "c"]))
///     .with(Ranking(&["c", "a", "d"]));
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let fused = hybrid.retrieve("query", 3).await?;
/// let ids: Vec<_> = fused.iter().map(|p| p.id.as_str()).collect();
/// assert_eq!(ids, ["a", "c", "b"]); // a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62
/// assert!((fused[0].score - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-7);
/// # Ok::<(), RetrieveError>(())
/// # }).unwrap();
/// ```
pub struct HybridRetriever {
    sources: Vec<Source>,
    rrf_k: f64,
    candidates: usize,
}

impl std::fmt::Debug for HybridRetriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridRetriever")
            .field("retrievers", &self.sources.len())
            .field(
                "weights",
                &self.sources.iter().map(|s| s.weight).collect::<Vec<_>>(),
            )
            .field("rrf_k", &self.rrf_k)
            .field("candidates", &self.candidates)
            .finish()
    }
}

impl Default for HybridRetriever {
    fn default() -> Self {
        Self::new()
    }
}

impl HybridRetriever {
    /// The usual RRF constant (Cormack et al.'s 60).
    pub const DEFAULT_RRF_K: f64 = 60.0;

    /// How many candidates each retriever is asked for by default (or `k`, if more).
    pub const DEFAULT_CANDIDATES: usize = 50;

    /// A hybrid of no retrievers yet: add them with [`with`](Self::with).
    pub fn new() -> Self {
        HybridRetriever {
            sources: Vec::new(),
            rrf_k: Self::DEFAULT_RRF_K,
            candidates: Self::DEFAULT_CANDIDATES,
        }
    }

    /// Adds a retriever with weight 1.
    pub fn with(self, retriever: impl Retriever + 'static) -> Self {
        self.with_weight(retriever, 1.0)
    }

    /// Adds a retriever whose reciprocal ranks count `weight` times (weighted RRF). A weight must
    /// be finite and not negative, or searching fails with [`RetrieveError::Other`].
    pub fn with_weight(mut self, retriever: impl Retriever + 'static, weight: f64) -> Self {
        self.sources.push(Source {
            retriever: Box::new(retriever),
            weight,
        });
        self
    }

    /// The RRF constant: larger values flatten the difference between high and low ranks
    /// (default [`DEFAULT_RRF_K`](Self::DEFAULT_RRF_K)). It must be finite and not negative, or
    /// searching fails with [`RetrieveError::Other`].
    pub fn rrf_k(mut self, rrf_k: f64) -> Self {
        self.rrf_k = rrf_k;
        self
    }

    /// How many candidates each retriever is asked for; a search for more (`k`) asks for `k`
    /// (default [`DEFAULT_CANDIDATES`](Self::DEFAULT_CANDIDATES)).
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = n;
        self
    }

    /// How many retrievers the hybrid holds.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether the hybrid holds no retrievers.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The `k` best passages by fused score, best first. Every retriever is asked at the same
    /// time; the first that fails (in the order they were added) fails the search.
    pub async fn search(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        self.check()?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let depth = self.candidates.max(k);
        let rankings = futures_util::future::join_all(
            self.sources
                .iter()
                .map(|s| s.retriever.retrieve(query, depth)),
        )
        .await;
        let mut lists = Vec::with_capacity(rankings.len());
        for ranking in rankings {
            lists.push(ranking?);
        }
        let weights: Vec<f64> = self.sources.iter().map(|s| s.weight).collect();
        Ok(fuse(lists, &weights, self.rrf_k, depth, k))
    }

    fn check(&self) -> Result<(), RetrieveError> {
        let fail = |message: String| {
            Err(RetrieveError::Other {
                retriever: NAME.into(),
                message,
            })
        };
        if self.sources.is_empty() {
            return fail("it has no retrievers to combine".into());
        }
        if !(self.rrf_k.is_finite() && self.rrf_k >= 0.0) {
            return fail(format!(
                "rrf_k must be finite and not negative, got {}",
                self.rrf_k
            ));
        }
        if let Some((i, s)) = self
            .sources
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.weight.is_finite() && s.weight >= 0.0))
        {
            return fail(format!(
                "the weight of retriever {i} must be finite and not negative, got {}",
                s.weight
            ));
        }
        Ok(())
    }
}

impl Retriever for HybridRetriever {
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
        let span = tracing::debug_span!("retrieve.hybrid", k, retrievers = self.sources.len());
        Box::pin(self.search(query, k).instrument(span))
    }
}

/// A passage being fused.
struct Fused {
    passage: Passage,
    score: f64,
    best_rank: usize,
    /// Its position in the order passages were first seen.
    first_seen: usize,
}

/// Reciprocal rank fusion of `lists` (each best first, only its first `depth` passages and the
/// first occurrence of an id counting), the `k` best.
fn fuse(
    lists: Vec<Vec<Passage>>,
    weights: &[f64],
    rrf_k: f64,
    depth: usize,
    k: usize,
) -> Vec<Passage> {
    let mut fused: Vec<Fused> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (list, &weight) in lists.into_iter().zip(weights) {
        let mut seen = HashSet::new();
        for (i, passage) in list.into_iter().take(depth).enumerate() {
            if !seen.insert(passage.id.clone()) {
                continue;
            }
            let rank = i + 1;
            let contribution = weight / (rrf_k + rank as f64);
            match by_id.get(&passage.id) {
                Some(&at) => {
                    let entry = &mut fused[at];
                    entry.score += contribution;
                    entry.best_rank = entry.best_rank.min(rank);
                }
                None => {
                    by_id.insert(passage.id.clone(), fused.len());
                    fused.push(Fused {
                        passage,
                        score: contribution,
                        best_rank: rank,
                        first_seen: fused.len(),
                    });
                }
            }
        }
    }
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.best_rank.cmp(&b.best_rank))
            .then(a.first_seen.cmp(&b.first_seen))
    });
    fused
        .into_iter()
        .take(k)
        .map(|f| Passage {
            score: f.score as f32,
            ..f.passage
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Returns fixed ids, best first, and records the `k` it was asked for.
    struct Ranking {
        ids: Vec<&'static str>,
        tag: &'static str,
        asked: Arc<AtomicUsize>,
    }

    fn ranking(ids: &[&'static str], tag: &'static str) -> Ranking {
        Ranking {
            ids: ids.to_vec(),
            tag,
            asked: Arc::new(AtomicUsize::new(0)),
        }
    }

    impl Retriever for Ranking {
        fn retrieve<'a>(
            &'a self,
            _query: &'a str,
            k: usize,
        ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
            self.asked.store(k, Ordering::SeqCst);
            let hits = self.ids.iter().take(k).enumerate().map(|(i, id)| {
                let mut p = Passage::new(*id, format!("{} {id}", self.tag), 100.0 - i as f32);
                p.extra.insert("from".into(), self.tag.into());
                p
            });
            Box::pin(std::future::ready(Ok(hits.collect())))
        }
    }

    struct Failing;

    impl Retriever for Failing {
        fn retrieve<'a>(
            &'a self,
            _query: &'a str,
            _k: usize,
        ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
            Box::pin(std::future::ready(Err(RetrieveError::Other {
                retriever: "failing".into(),
                message: "down".into(),
            })))
        }
    }

    fn ids(passages: &[Passage]) -> Vec<&str> {
        passages.iter().map(|p| p.id.as_str()).collect()
    }

    #[tokio::test]
    async fn fuses_by_reciprocal_rank_and_dedups_by_id() {
        let hybrid = HybridRetriever::new()
            .with(ranking(&["a", "b", "c", "d"], "bm25"))
            .with(ranking(&["d", "c", "x"], "dense"));
        let fused = hybrid.search("q", 10).await.unwrap();
        // c: 1/63 + 1/62; d: 1/64 + 1/61; a: 1/61; b: 1/62; x: 1/63.
        assert_eq!(ids(&fused), ["d", "c", "a", "b", "x"]);
        let expect = |ranks: &[usize]| ranks.iter().map(|r| 1.0 / (60.0 + *r as f64)).sum::<f64>();
        assert_eq!(fused[0].score, expect(&[4, 1]) as f32);
        assert_eq!(fused[1].score, expect(&[3, 2]) as f32);
        assert_eq!(fused[4].score, expect(&[3]) as f32);
        // The text and extra fields come from the first retriever that returned the passage.
        assert_eq!(fused[0].text, "bm25 d");
        assert_eq!(fused[0].extra["from"], "bm25");
        assert_eq!(fused[4].text, "dense x");
        // k cuts the fused list.
        assert_eq!(ids(&hybrid.search("q", 2).await.unwrap()), ["d", "c"]);
        assert!(hybrid.search("q", 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn ties_are_broken_by_best_rank_then_first_seen() {
        // a and z both have 1/61 + 1/63 (ranks 1 and 3); b and y 2/62; p and q only 1/64 each.
        let hybrid = HybridRetriever::new()
            .with(ranking(&["z", "b", "a", "p"], "one"))
            .with(ranking(&["a", "y", "z", "q"], "two"))
            .with(ranking(&["m", "b", "n"], "three"))
            .with(ranking(&["k", "y", "l"], "four"));
        let fused = hybrid.search("q", 20).await.unwrap();
        let got = ids(&fused);
        // b (1/62 + 1/62) ties y; both have best rank 2; b was seen first.
        let pos = |id: &str| got.iter().position(|x| *x == id).unwrap();
        assert!(pos("z") < pos("a"), "{got:?}");
        assert!(pos("b") < pos("y"), "{got:?}");
        assert!(pos("p") < pos("q"), "{got:?}");
        // Singletons at rank 1 (m, k) beat singletons at rank 3 (n, l), each in order seen.
        assert!(pos("m") < pos("k") && pos("k") < pos("n") && pos("n") < pos("l"));
        // The same inputs give the same order every time.
        assert_eq!(ids(&hybrid.search("q", 20).await.unwrap()), got);

        // With rrf_k 0, w = 1/1, y = 1/2 + 1/2 and x = 1/1 tie exactly: the best single rank
        // goes first (w and x had rank 1), then the order seen.
        let hybrid = HybridRetriever::new()
            .with(ranking(&["w", "y"], "one"))
            .with(ranking(&["x", "y"], "two"))
            .rrf_k(0.0);
        let fused = hybrid.search("q", 3).await.unwrap();
        assert_eq!(ids(&fused), ["w", "x", "y"]);
        assert!(fused.iter().all(|p| p.score == 1.0));
    }

    #[tokio::test]
    async fn each_retriever_is_asked_for_candidates_but_at_least_k() {
        let a = ranking(&["a"], "a");
        let b = ranking(&["b"], "b");
        let (asked_a, asked_b) = (Arc::clone(&a.asked), Arc::clone(&b.asked));
        let hybrid = HybridRetriever::new().with(a).with(b).candidates(7);
        hybrid.search("q", 3).await.unwrap();
        assert_eq!(asked_a.load(Ordering::SeqCst), 7);
        assert_eq!(asked_b.load(Ordering::SeqCst), 7);
        hybrid.search("q", 12).await.unwrap();
        assert_eq!(asked_a.load(Ordering::SeqCst), 12);
        let hybrid = HybridRetriever::new().with(ranking(&["a"], "a"));
        assert_eq!(hybrid.candidates, HybridRetriever::DEFAULT_CANDIDATES);
    }

    #[tokio::test]
    async fn duplicates_within_one_ranking_count_once_and_extra_candidates_are_ignored() {
        struct Sloppy;
        impl Retriever for Sloppy {
            fn retrieve<'a>(
                &'a self,
                _query: &'a str,
                _k: usize,
            ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
                // Ignores k and repeats an id.
                let hits = ["a", "a", "b", "c", "d"].map(|id| Passage::new(id, id, 1.0));
                Box::pin(std::future::ready(Ok(hits.to_vec())))
            }
        }
        let fused = HybridRetriever::new()
            .with(Sloppy)
            .candidates(3)
            .search("q", 3)
            .await
            .unwrap();
        // Only the first three results count: a at rank 1, b at rank 3.
        assert_eq!(ids(&fused), ["a", "b"]);
        assert_eq!(fused[1].score, (1.0 / 63.0f64) as f32);
    }

    #[tokio::test]
    async fn weights_and_rrf_k_change_the_fusion() {
        let hybrid = HybridRetriever::new()
            .with_weight(ranking(&["a", "b"], "one"), 1.0)
            .with_weight(ranking(&["b", "a"], "two"), 3.0)
            .rrf_k(0.0);
        let fused = hybrid.search("q", 2).await.unwrap();
        // a: 1/1 + 3/2 = 2.5; b: 1/2 + 3/1 = 3.5.
        assert_eq!(ids(&fused), ["b", "a"]);
        assert_eq!(fused[0].score, 3.5);
        assert_eq!(fused[1].score, 2.5);
    }

    #[tokio::test]
    async fn failures_and_bad_settings_are_typed_errors() {
        let err = HybridRetriever::new()
            .with(ranking(&["a"], "a"))
            .with(Failing)
            .search("q", 3)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "failing: down");

        let err = HybridRetriever::new().search("q", 3).await.unwrap_err();
        assert!(err.to_string().contains("no retrievers"), "{err}");
        let err = HybridRetriever::new()
            .with(ranking(&["a"], "a"))
            .rrf_k(-1.0)
            .search("q", 3)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("rrf_k"), "{err}");
        let err = HybridRetriever::new()
            .with_weight(ranking(&["a"], "a"), f64::NAN)
            .retrieve("q", 3)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("weight of retriever 0"), "{err}");
    }
}
