// Autocast for one scope across libtorch versions (see autocast.h).
#include "runtime/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "util/error.h"

// libtorch 2.4 made the autocast switches take the device type; the per-device functions before it
// (Debian's 1.13 has only those) were deprecated then.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define RLRF_AUTOCAST_BY_DEVICE 1
#else
#define RLRF_AUTOCAST_BY_DEVICE 0
#endif

namespace rlrf {

namespace {

void check_device(c10::DeviceType device) {
  RLRF_CHECK(device == c10::DeviceType::CPU || device == c10::DeviceType::CUDA,
             "mixed precision (autocast) is supported on cpu and cuda, not on {}", c10::DeviceTypeName(device));
}

void set_on(c10::DeviceType device, bool on) {
#if RLRF_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(device, on);
#else
  if (device == c10::DeviceType::CUDA) at::autocast::set_enabled(on);
  else at::autocast::set_cpu_enabled(on);
#endif
}

at::ScalarType dtype_of(c10::DeviceType device) {
#if RLRF_AUTOCAST_BY_DEVICE
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_dtype(c10::DeviceType device, at::ScalarType dtype) {
#if RLRF_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::DeviceType::CUDA) at::autocast::set_autocast_gpu_dtype(dtype);
  else at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

}  // namespace

bool autocast_on(c10::DeviceType device) {
  check_device(device);
#if RLRF_AUTOCAST_BY_DEVICE
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

AutocastScope::AutocastScope(at::ScalarType compute, const c10::Device& device) {
  on_ = compute == at::kBFloat16 || compute == at::kHalf;
  if (!on_) return;
  device_ = device.type();
  was_ = autocast_on(device_);
  dtype_was_ = dtype_of(device_);
  set_dtype(device_, compute);
  set_on(device_, true);
}

AutocastScope::~AutocastScope() {
  if (!on_) return;
  set_on(device_, was_);
  set_dtype(device_, dtype_was_);
  if (!was_) at::autocast::clear_cache();
}

}  // namespace rlrf
