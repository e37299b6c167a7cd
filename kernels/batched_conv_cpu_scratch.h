// Internal to the CPU implementation (batched_conv_cpu.cc,
// batched_conv_cpu_grad.cc): carving the one scratch block of a call
// (hk_cpu_scratch, batched_conv.h) into buffers, and handing its per-thread
// buffer sets to the ParallelFor's concurrent body calls. No TensorFlow.
#ifndef HYPERKERAS_KERNELS_BATCHED_CONV_CPU_SCRATCH_H_
#define HYPERKERAS_KERNELS_BATCHED_CONV_CPU_SCRATCH_H_

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "batched_conv.h"

namespace hyperkeras {
namespace cpu_scratch {

constexpr size_t kAlign = 64;  // every buffer starts on a cache line

// Offsets of buffers inside one block. Add() reserves `n` elements of T and
// returns their byte offset; bytes() is the block size. Sizes that do not
// fit in size_t set overflow() (the call then reports HK_ERR_OUT_OF_MEMORY).
class Layout {
 public:
  template <class T>
  size_t Add(int64_t n) {
    return AddBytes(sizeof(T), n);
  }
  // `count` consecutive copies of `item` (each kAlign-rounded).
  size_t AddArray(const Layout& item, int64_t count) {
    if (item.overflow()) overflow_ = true;
    return AddBytes(item.bytes(), count);
  }
  size_t bytes() const { return Round(bytes_); }
  bool overflow() const { return overflow_; }

 private:
  // Sizes stay below SIZE_MAX / 2, so rounding never wraps.
  static constexpr size_t kMax = SIZE_MAX / 2;
  static size_t Round(size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }
  size_t AddBytes(size_t each, int64_t count) {
    const size_t off = Round(bytes_);
    const size_t n = count > 0 ? static_cast<size_t>(count) : 0;
    if (overflow_ || off > kMax || (each && n > (kMax - off) / each)) {
      overflow_ = true;
      return 0;
    }
    bytes_ = off + each * n;
    return off;
  }
  size_t bytes_ = 0;
  bool overflow_ = false;
};

// The typed buffer at byte offset `off` of `base`.
template <class T>
T* At(void* base, size_t off) {
  return reinterpret_cast<T*>(static_cast<unsigned char*>(base) + off);
}

// Allocates the call's block (`bytes` > 0) from the caller's allocator;
// NULL if it fails (or the layout overflowed). A zero-size layout needs no
// block: returns a non-NULL dummy that must not be dereferenced.
inline void* Allocate(const hk_cpu_scratch& s, const Layout& l) {
  static unsigned char empty alignas(kAlign);
  if (l.overflow() || !s.alloc) return nullptr;
  if (l.bytes() == 0) return &empty;
  return s.alloc(s.ctx, l.bytes());
}

// Number of per-thread buffer sets for a parallel loop of `ntasks` tasks:
// one per possible concurrent body call, at most one per task.
inline int64_t NumSlots(const hk_cpu_scratch& s, int64_t ntasks) {
  const int64_t w = std::max(1, s.max_workers);
  return std::max<int64_t>(1, std::min(w, ntasks));
}

// Hands out `n` per-thread buffer sets (`stride` bytes apart from `base`) to
// concurrent body calls: a Lease holds one for the lifetime of a body call.
// If more bodies run at once than there are sets, the extra ones wait until
// one is released (bodies never wait on each other otherwise, so this cannot
// deadlock). `free_list` is scratch for n ints.
class SlotPool {
 public:
  SlotPool(void* base, size_t stride, int64_t n, int64_t* free_list)
      : base_(static_cast<unsigned char*>(base)), stride_(stride),
        free_(free_list), nfree_(n) {
    for (int64_t i = 0; i < n; ++i) free_[i] = n - 1 - i;
  }
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;

  class Lease {
   public:
    explicit Lease(SlotPool& pool) : pool_(pool), slot_(pool.Acquire()) {}
    ~Lease() { pool_.Release(slot_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    // The buffer at byte offset `off` of this lease's set.
    template <class T>
    T* Get(size_t off) const {
      return At<T>(pool_.base_ + static_cast<size_t>(slot_) * pool_.stride_, off);
    }

   private:
    SlotPool& pool_;
    int64_t slot_;
  };

 private:
  int64_t Acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return nfree_ > 0; });
    return free_[--nfree_];
  }
  void Release(int64_t slot) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      free_[nfree_++] = slot;
    }
    cv_.notify_one();
  }

  unsigned char* base_;
  size_t stride_;
  int64_t* free_;
  int64_t nfree_;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace cpu_scratch
}  // namespace hyperkeras

#endif  // HYPERKERAS_KERNELS_BATCHED_CONV_CPU_SCRATCH_H_
