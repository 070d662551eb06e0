//! Independent jobs on worker threads, results in job order whatever thread finished first.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `job(0..count)` on `threads` threads and returns the results in index order. Once a
/// result satisfies `stop`, no further index is started; the jobs already running finish, so
/// every index below a stopping one is always done.
pub fn map_ordered<R: Send>(
    count: usize,
    threads: usize,
    job: impl Fn(usize) -> R + Sync,
    stop: impl Fn(&R) -> bool + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    let done = Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, count.max(1)) {
            scope.spawn(|| {
                while !stopped.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        return;
                    }
                    let result = job(index);
                    if stop(&result) {
                        stopped.store(true, Ordering::Relaxed);
                    }
                    done.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((index, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_and_stop_after_the_first_stopping_one() {
        assert_eq!(
            map_ordered(50, 3, |i| i * 2, |_| false),
            (0..50).map(|i| i * 2).collect::<Vec<_>>()
        );
        let stopped = map_ordered(50, 2, |i| i, |i| *i == 10);
        assert_eq!(&stopped[..11], &(0..=10).collect::<Vec<_>>()[..]);
        assert!(stopped.len() < 50);
        assert!(map_ordered(0, 4, |i| i, |_| false).is_empty());
    }
}
