// Work shared out over XLA's CPU threads (the FFI's thread pool) by the kernels in this folder.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace rcan {

// Items [0, total) in chunks handed out by an atomic counter: the pool's threads and the calling thread
// run body(begin, end, scratch) on the chunks they take, each with a Scratch of its own (made on its first
// chunk: a helper that finds no work left allocates nothing). The calling thread works too and then waits
// only for chunks already taken, so a pool busy with other work delays nothing and can never deadlock the
// call. body is copied into the shared job: it must hold what it needs by value.
template <typename Scratch, typename Body>
void parallel_for(xla::ffi::ThreadPool& pool, int64_t total, Body body) {
  if (total <= 0) return;
  struct Job {
    Body body;
    int64_t total, chunk, chunks;
    std::atomic<int64_t> next{0}, done{0};
    Job(Body b, int64_t t, int64_t c) : body(std::move(b)), total(t), chunk(c), chunks((t + c - 1) / c) {}
    void work() {
      std::unique_ptr<Scratch> scratch;
      for (int64_t i; (i = next.fetch_add(1)) < chunks;) {
        if (!scratch) scratch = std::make_unique<Scratch>();
        body(i * chunk, std::min((i + 1) * chunk, total), *scratch);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  };
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  // A few chunks per thread evens out the ends.
  auto job = std::make_shared<Job>(std::move(body), total, std::max<int64_t>(1, total / (8 * threads)));
  for (int64_t t = 1; t < threads && t < job->chunks; ++t) pool.Schedule([job] { job->work(); });
  job->work();
  while (job->done.load(std::memory_order_acquire) < job->chunks) std::this_thread::yield();
}

}  // namespace rcan
