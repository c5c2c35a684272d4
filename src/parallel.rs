//! Splitting independent work over the machine's cores, keeping results in order.
//!
//! Used where livefs does many small, independent, syscall-bound steps (checking
//! paths, writing files, walking subtrees): contiguous chunks keep each thread's
//! directory-fd cache useful and the results in input order.

/// How many threads to use for `n` items when fewer than `min` items are not
/// worth a thread: at most the cores (and 4).
pub fn threads_for(n: usize, min: usize) -> usize {
    // Asked once: the standard library reads the cgroup's CPU quota each time.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1).min(4));
    if n < min.max(2) {
        1
    } else {
        cores.min(n)
    }
}

/// Maps `f` over contiguous chunks of `items` on scoped threads and concatenates
/// the per-chunk results in order. The first error (in input order) wins. Small
/// steps (`items` are single syscall-sized operations) only fan out from 16 items.
pub fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&[T]) -> anyhow::Result<Vec<R>> + Sync,
) -> anyhow::Result<Vec<R>> {
    map_chunks_min(items, 16, f)
}

/// [`map_chunks`], fanning out from `min` items (use 2 for large items).
pub fn map_chunks_min<T: Sync, R: Send>(
    items: &[T],
    min: usize,
    f: impl Fn(&[T]) -> anyhow::Result<Vec<R>> + Sync,
) -> anyhow::Result<Vec<R>> {
    let n = threads_for(items.len(), min);
    if n <= 1 {
        return f(items);
    }
    let size = items.len().div_ceil(n);
    let results: Vec<anyhow::Result<Vec<R>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(size).map(|chunk| s.spawn(|| f(chunk))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked"))))
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}
