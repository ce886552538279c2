//! CPython's `set` of small non-negative ints, for its iteration order.
//!
//! A CPython set iterates its hash table slot by slot, and an int hashes to itself, so a set of
//! ints smaller than its table iterates in ascending order, and one holding larger ints may not
//! (`{3, 9}` iterates as `9, 3` in a table of 8). Code that draws a random element from a list
//! built by iterating a set (gepa's Pareto selector, its merge proposer) depends on that order;
//! [`PyIntSet`] reproduces the table of CPython 3.11's `setobject.c` (linear probing, perturbed
//! probing, growth at 3/5 full, the copy of `set(other_set)`) for sets that are only added to.

/// Slots probed in a row before a perturbed jump (`LINEAR_PROBES`).
const LINEAR_PROBES: usize = 9;
/// The perturbation shift (`PERTURB_SHIFT`).
const PERTURB_SHIFT: u32 = 5;
/// The smallest table (`PySet_MINSIZE`).
const MIN_SIZE: usize = 8;

/// A CPython `set` of non-negative ints, built by adding (no removals), iterated as CPython
/// iterates it.
///
/// ```
/// use dspex_core::pycompat::intset::PyIntSet;
///
/// // Python: list({3, 9}) == [9, 3]; list(set([9, 3])) == [9, 3]
/// let s = PyIntSet::from_adds([3, 9]);
/// assert_eq!(s.iter().collect::<Vec<_>>(), [9, 3]);
/// // Small ints iterate in ascending order.
/// assert_eq!(PyIntSet::from_adds([4, 0, 2]).iter().collect::<Vec<_>>(), [0, 2, 4]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyIntSet {
    table: Vec<Option<u64>>,
    fill: usize,
}

impl Default for PyIntSet {
    fn default() -> Self {
        Self::new()
    }
}

impl PyIntSet {
    /// `set()`.
    pub fn new() -> Self {
        PyIntSet {
            table: vec![None; MIN_SIZE],
            fill: 0,
        }
    }

    /// A set built by adding `keys` in order: `set(list)`, a set comprehension, `{a, b}`.
    pub fn from_adds(keys: impl IntoIterator<Item = u64>) -> Self {
        let mut s = Self::new();
        for k in keys {
            s.add(k);
        }
        s
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.fill
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.fill == 0
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: u64) -> bool {
        self.table.contains(&Some(key))
    }

    /// The elements in CPython's iteration order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.table.iter().filter_map(|k| *k)
    }

    /// `set.add(key)` (`set_add_entry`).
    pub fn add(&mut self, key: u64) {
        let mask = self.mask();
        let mut i = (key as usize) & mask;
        let mut perturb = key;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in 0..=probes {
                match self.table[i + j] {
                    None => {
                        self.table[i + j] = Some(key);
                        self.fill += 1;
                        if self.fill * 5 >= mask * 3 {
                            self.resize(self.fill * 4);
                        }
                        return;
                    }
                    Some(k) if k == key => return,
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i * 5 + 1 + perturb as usize) & mask;
        }
    }

    /// `set_insert_clean`: `key` into a table known not to hold it.
    fn insert_clean(table: &mut [Option<u64>], key: u64) {
        let mask = table.len() - 1;
        let mut i = (key as usize) & mask;
        let mut perturb = key;
        loop {
            if table[i].is_none() {
                table[i] = Some(key);
                return;
            }
            if i + LINEAR_PROBES <= mask {
                for j in 1..=LINEAR_PROBES {
                    if table[i + j].is_none() {
                        table[i + j] = Some(key);
                        return;
                    }
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i * 5 + 1 + perturb as usize) & mask;
        }
    }

    /// `set_table_resize(so, minused)`.
    fn resize(&mut self, minused: usize) {
        let mut size = MIN_SIZE;
        while size <= minused {
            size <<= 1;
        }
        if size == MIN_SIZE && self.table.len() == MIN_SIZE {
            // The small table, no dummies: nothing to do.
            return;
        }
        let old = std::mem::replace(&mut self.table, vec![None; size]);
        for key in old.into_iter().flatten() {
            Self::insert_clean(&mut self.table, key);
        }
    }

    /// `set(self)`: a copy, laid out as CPython's `set_merge` into an empty set lays it out
    /// (which may differ from this set's own layout, and so its order).
    pub fn copy(&self) -> Self {
        let mut out = Self::new();
        if self.fill == 0 {
            return out;
        }
        if self.fill * 5 >= out.mask() * 3 {
            out.resize(self.fill * 2);
        }
        if out.table.len() == self.table.len() {
            out.table.clone_from(&self.table);
        } else {
            for key in self.iter() {
                Self::insert_clean(&mut out.table, key);
            }
        }
        out.fill = self.fill;
        out
    }

    /// `self & other` (`set_intersection`): the larger set is probed for each element of the
    /// smaller one, in the smaller one's order (`other`'s when they are the same size).
    pub fn intersection(&self, other: &PyIntSet) -> Self {
        let (probed, walked) = if other.len() > self.len() {
            (other, self)
        } else {
            (self, other)
        };
        Self::from_adds(walked.iter().filter(|k| probed.contains(*k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(s: &PyIntSet) -> Vec<u64> {
        s.iter().collect()
    }

    #[test]
    fn orders_match_cpython() {
        // Each expectation printed by CPython 3.11 (`list(...)`).
        assert_eq!(order(&PyIntSet::from_adds([3, 9])), [9, 3]);
        assert_eq!(order(&PyIntSet::from_adds([1, 9, 17])), [1, 9, 17]);
        assert_eq!(order(&PyIntSet::from_adds([0, 8, 16, 24, 32])), PY_GROWN);
        assert_eq!(
            order(&PyIntSet::from_adds([2, 5, 9, 12, 13]).copy()),
            PY_COPY
        );
        assert_eq!(
            order(
                &PyIntSet::from_adds([10, 3, 7, 1]).intersection(&PyIntSet::from_adds([3, 10, 11]))
            ),
            PY_AND
        );
        let big = PyIntSet::from_adds(0..40);
        assert_eq!(order(&big), (0..40).collect::<Vec<_>>());
        assert!(big.contains(39) && !big.contains(40));
        assert_eq!(big.len(), 40);
    }

    /// Random cases checked against CPython 3.11 (`testdata/gen_py_intset.py`).
    #[test]
    fn random_cases_match_cpython() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("testdata/py_intset.json")).unwrap();
        let list = |v: &serde_json::Value| -> Vec<u64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        };
        for case in cases["adds"].as_array().unwrap() {
            let s = PyIntSet::from_adds(list(&case[0]));
            assert_eq!(order(&s), list(&case[1]), "{case}");
            assert_eq!(order(&s.copy()), list(&case[2]), "copy: {case}");
            assert_eq!(
                order(&PyIntSet::from_adds(order(&s))),
                list(&case[3]),
                "{case}"
            );
        }
        for case in cases["and"].as_array().unwrap() {
            let (a, b) = (
                PyIntSet::from_adds(list(&case[0])),
                PyIntSet::from_adds(list(&case[1])),
            );
            assert_eq!(order(&a.intersection(&b)), list(&case[2]), "{case}");
        }
    }

    const PY_GROWN: [u64; 5] = [0, 32, 8, 16, 24];
    const PY_COPY: [u64; 5] = [2, 5, 9, 12, 13];
    const PY_AND: [u64; 2] = [10, 3];
}
