// Minimal emulation of the CUDA execution model on the CPU, for testing
// device code (kernels/batched_conv_kernel.cuh) with g++ and ThreadSanitizer.
//
//  * every thread of a block is a real std::thread; threadIdx, blockIdx,
//    blockDim and gridDim are thread_local;
//  * __syncthreads() is a real barrier (condition-variable, generation count);
//  * __shared__ becomes `static`: one copy per kernel instantiation, shared by
//    the threads of the running block. Blocks run one after another (the
//    same blockDim threads loop over the grid, with a barrier between blocks),
//    so reusing the static storage for the next block is race-free;
//  * __global__/__device__/__host__/__forceinline__/__launch_bounds__ are
//    defined away; hk_emu::launch(grid, block, kernel, args...) replaces
//    kernel<<<grid, block>>>(args...).
// Device code must let every thread reach every __syncthreads() (as on a GPU).
#ifndef HYPERKERAS_KERNELS_EMULATION_CUDA_ON_CPU_H_
#define HYPERKERAS_KERNELS_EMULATION_CUDA_ON_CPU_H_

#if defined(__CUDACC__)
#error "cuda_on_cpu.h is for host compilers only"
#endif

#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace hk_emu {

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const unsigned long gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != gen; });
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int n_;
  int count_ = 0;
  unsigned long gen_ = 0;
};

inline thread_local Barrier* current_barrier = nullptr;

// Runs kernel(args...) over the grid: blockDim threads, blocks in sequence.
template <class Kernel, class... Args>
void launch(dim3 grid, dim3 block, Kernel kernel, Args... args) {
  const unsigned nt = block.x * block.y * block.z;
  Barrier barrier(static_cast<int>(nt));
  std::vector<std::thread> threads;
  threads.reserve(nt);
  for (unsigned t = 0; t < nt; ++t) {
    threads.emplace_back([&, t] {
      current_barrier = &barrier;
      blockDim = block;
      gridDim = grid;
      threadIdx = dim3(t % block.x, (t / block.x) % block.y,
                       t / (block.x * block.y));
      for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
          for (unsigned bx = 0; bx < grid.x; ++bx) {
            blockIdx = dim3(bx, by, bz);
            kernel(args...);
            barrier.wait();  // block done: shared storage may be reused
          }
      current_barrier = nullptr;
    });
  }
  for (auto& th : threads) th.join();
}

}  // namespace hk_emu

inline void __syncthreads() { hk_emu::current_barrier->wait(); }

#endif  // HYPERKERAS_KERNELS_EMULATION_CUDA_ON_CPU_H_
