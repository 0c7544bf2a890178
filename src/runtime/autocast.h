// Mixed-precision compute through libtorch's autocast, for one scope, on CPU or CUDA, with the
// libtorch versions this project builds against: Debian's 1.13 (per-device functions:
// set_cpu_enabled, set_autocast_gpu_dtype, ...) and 2.4 and later (set_autocast_enabled(device, on),
// set_autocast_dtype(device, dtype)), such as the CUDA build inside a Python torch install.
#pragma once
#include <ATen/ATen.h>

namespace rlrf {

// Whether autocast is on for `device` (only CPU and CUDA are asked).
bool autocast_on(c10::DeviceType device);

// Turns autocast on for the scope's device with `compute` (bf16 or fp16) as the lower precision,
// or does nothing when `compute` is fp32/fp64. Matmuls then run in `compute` on fp32 weights (each
// weight cast once per forward), norms, softmax and losses stay fp32, and gradients flow back to the
// fp32 weights. Construct around a forward only (autocast is not for backward). The previous state
// comes back at the end of the scope, and the cast cache is dropped when the outermost scope ends,
// so the next forward sees updated weights.
class AutocastScope {
 public:
  AutocastScope(at::ScalarType compute, const c10::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_ = false, was_ = false;
  c10::DeviceType device_ = c10::DeviceType::CPU;
  at::ScalarType dtype_was_ = at::kBFloat16;
};

}  // namespace rlrf
