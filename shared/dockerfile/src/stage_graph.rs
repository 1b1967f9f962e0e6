//! Dependencies between stages, the target and a parallel build order (spec §8.0).

use serde::Serialize;

use crate::instruction::Span;

/// How a stage uses something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyKind {
    /// `FROM <stage or image>`.
    Base,
    /// `COPY --from=...`.
    CopyFrom,
    /// `RUN --mount=from=...`.
    MountFrom,
}

/// What a dependency points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyTarget {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference or named build context (resolved by the executor).
    External(String),
    /// The empty base image.
    Scratch,
}

/// One edge of the stage graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// Why the stage depends on the target.
    pub kind: DependencyKind,
    /// What it depends on.
    pub target: DependencyTarget,
    /// The instruction that creates the edge.
    pub span: Span,
}

/// The stage graph. Edges always point at earlier stages, so it is acyclic by construction;
/// references to the current or a later stage are rejected while building it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StageGraph {
    /// Per stage, its dependencies in instruction order.
    pub dependencies: Vec<Vec<Dependency>>,
    /// The stage being built (`--target`, else the last stage).
    pub target: usize,
    /// Per stage, whether the target needs it.
    pub required: Vec<bool>,
    /// Required stages grouped in levels: every stage's stage dependencies are in earlier
    /// levels, so the stages of one level can be built in parallel. Ascending indices.
    pub levels: Vec<Vec<usize>>,
}

impl StageGraph {
    /// Builds reachability and levels from per-stage dependencies.
    pub(crate) fn new(dependencies: Vec<Vec<Dependency>>, target: usize) -> StageGraph {
        let n = dependencies.len();
        let mut required = vec![false; n];
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            let Some(slot) = required.get_mut(i) else {
                continue;
            };
            if *slot {
                continue;
            }
            *slot = true;
            for d in dependencies.get(i).into_iter().flatten() {
                if let DependencyTarget::Stage(j) = d.target
                    && j < i
                {
                    stack.push(j);
                }
            }
        }
        // Edges point backwards, so one forward pass computes longest-path levels.
        let mut level = vec![0usize; n];
        for i in 0..n {
            let l = dependencies
                .get(i)
                .into_iter()
                .flatten()
                .filter_map(|d| match d.target {
                    DependencyTarget::Stage(j) if j < i => level.get(j).map(|l| l + 1),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            if let Some(slot) = level.get_mut(i) {
                *slot = l;
            }
        }
        let mut levels: Vec<Vec<usize>> = Vec::new();
        for i in (0..n).filter(|i| required.get(*i).copied().unwrap_or(false)) {
            let l = level.get(i).copied().unwrap_or(0);
            while levels.len() <= l {
                levels.push(Vec::new());
            }
            if let Some(v) = levels.get_mut(l) {
                v.push(i);
            }
        }
        levels.retain(|l| !l.is_empty());
        StageGraph {
            dependencies,
            target,
            required,
            levels,
        }
    }

    /// Required stages in a valid sequential build order.
    pub fn build_order(&self) -> Vec<usize> {
        self.levels.iter().flatten().copied().collect()
    }

    /// The stages `stage` directly depends on.
    pub fn stage_dependencies(&self, stage: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .dependencies
            .get(stage)
            .into_iter()
            .flatten()
            .filter_map(|d| match d.target {
                DependencyTarget::Stage(j) => Some(j),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(j: usize) -> Dependency {
        Dependency {
            kind: DependencyKind::CopyFrom,
            target: DependencyTarget::Stage(j),
            span: Span::default(),
        }
    }

    #[test]
    fn levels_and_reachability() {
        // 0, 1 independent; 2 uses 0; 3 unused; 4 uses 1 and 2.
        let g = StageGraph::new(
            vec![vec![], vec![], vec![dep(0)], vec![], vec![dep(1), dep(2)]],
            4,
        );
        assert_eq!(g.levels, vec![vec![0, 1], vec![2], vec![4]]);
        assert_eq!(g.required, vec![true, true, true, false, true]);
        assert_eq!(g.build_order(), vec![0, 1, 2, 4]);
        assert_eq!(g.stage_dependencies(4), vec![1, 2]);
    }
}
