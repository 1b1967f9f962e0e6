//! Runs the stages of a build as their dependencies allow: every stage whose dependencies
//! (base stage, `COPY --from`, `RUN --mount=from=`, as the parser's stage graph gives them)
//! are built starts at once, so independent stages — one level of the graph, or a later
//! stage whose inputs are ready early — build at the same time. Everything runs as futures
//! of the build's one task: cancelling the build drops them all (containers killed,
//! snapshots unmounted), and the first failure ends the others the same way.

use std::{collections::HashMap, future::Future};

use futures::stream::{FuturesUnordered, StreamExt};

/// Runs `start(index, results of its dependencies)` for each `(index, dependencies)` of
/// `stages` once its dependencies are done, and returns every result. Dependencies that are
/// not in `stages` are not waited for. `stalled` makes the error for stages that can never
/// start (a dependency cycle, which the parser's graph rules out).
pub async fn run<T, E, F, Fut>(
    stages: &[(u32, Vec<u32>)],
    mut start: F,
    stalled: impl FnOnce(Vec<u32>) -> E,
) -> Result<HashMap<u32, T>, E>
where
    T: Clone,
    F: FnMut(u32, HashMap<u32, T>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let known: Vec<u32> = stages.iter().map(|(i, _)| *i).collect();
    let mut pending: Vec<&(u32, Vec<u32>)> = stages.iter().collect();
    let mut done: HashMap<u32, T> = HashMap::new();
    let mut running = FuturesUnordered::new();
    loop {
        let mut waiting = Vec::with_capacity(pending.len());
        for stage in pending {
            let (index, deps) = stage;
            let mut inputs = HashMap::new();
            let ready = deps.iter().filter(|d| known.contains(*d)).all(|d| {
                done.get(d)
                    .map(|r: &T| inputs.insert(*d, r.clone()))
                    .is_some()
            });
            if ready {
                let fut = start(*index, inputs);
                let index = *index;
                running.push(async move { (index, fut.await) });
            } else {
                waiting.push(stage);
            }
        }
        pending = waiting;
        let Some((index, result)) = running.next().await else {
            if pending.is_empty() {
                return Ok(done);
            }
            return Err(stalled(pending.iter().map(|(i, _)| *i).collect()));
        };
        done.insert(index, result?);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Barrier;

    use super::*;

    /// Stages 0 and 1 are independent: each blocks until both are running, so the build
    /// only finishes if they run at the same time. Stage 2 needs both and sees their results.
    #[tokio::test]
    async fn independent_stages_run_at_the_same_time_and_dependants_wait() {
        let barrier = Arc::new(Barrier::new(2));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stages = vec![(0, vec![]), (1, vec![]), (2, vec![0, 1])];
        let run = run(
            &stages,
            |index, inputs: HashMap<u32, String>| {
                let barrier = barrier.clone();
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(format!("start {index}"));
                    if index < 2 {
                        barrier.wait().await;
                    } else {
                        let mut seen: Vec<_> = inputs.values().cloned().collect();
                        seen.sort();
                        assert_eq!(seen, ["built 0", "built 1"]);
                    }
                    log.lock().unwrap().push(format!("end {index}"));
                    Ok::<_, String>(format!("built {index}"))
                }
            },
            |s| format!("stalled {s:?}"),
        );
        // a deadlock (stages run one after the other) fails here instead of hanging
        let results = tokio::time::timeout(std::time::Duration::from_secs(30), run)
            .await
            .expect("stages 0 and 1 never ran at the same time")
            .unwrap();
        assert_eq!(results.len(), 3);
        let log = log.lock().unwrap().clone();
        let pos = |e: &str| log.iter().position(|l| l == e).unwrap();
        assert!(pos("start 1") < pos("end 0") && pos("start 0") < pos("end 1"));
        assert!(pos("start 2") > pos("end 0") && pos("start 2") > pos("end 1"));
    }

    #[tokio::test]
    async fn the_first_failure_ends_the_build() {
        let stages = vec![(0, vec![]), (1, vec![0]), (2, vec![])];
        let started = Arc::new(Mutex::new(Vec::new()));
        let r = run(
            &stages,
            |index, _inputs: HashMap<u32, ()>| {
                started.lock().unwrap().push(index);
                async move {
                    if index == 0 {
                        Err(format!("stage {index} failed"))
                    } else {
                        Ok(())
                    }
                }
            },
            |s| format!("stalled {s:?}"),
        )
        .await;
        assert_eq!(r.unwrap_err(), "stage 0 failed");
        assert!(
            !started.lock().unwrap().contains(&1),
            "a dependant of a failed stage never starts"
        );
    }
}
