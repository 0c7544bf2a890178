// Precompiled header for the modules that use libtorch: the narrow includes only.
#pragma once
#include <ATen/ATen.h>
#include <torch/types.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/embedding.h>
#include <torch/optim/adamw.h>
#include <string>
#include <vector>
