// The scorer's input without building it: a list slot's input row is concat(item-id embedding,
// attribute embeddings, user feature, item feature), and most of its pieces repeat across slots
// (20 genres, one user per list, a batch's few hundred distinct items, the positions). The first
// layer of a scorer is linear in that row, so W x = sum over pieces of W_piece piece, and a piece
// drawn from a small table is projected once per table row and then gathered: the same numbers
// (up to the order of float additions) and the same gradients as concat-then-matmul, with fewer
// FLOPs. For DLCM the first layer is the GRU's input projection; for PRM the attention's
// in-projection and the MLP's first layer on the input half (both read the same row).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace rlrf {

// One piece of every slot's input row: slot s reads table[index[s]] (index [slots] int64), or
// table[s] when index is undefined (table then [slots, d]). The piece adds into columns
// [column, column + d) of the row; pieces may overlap (PRM's positions add to the whole row).
struct SlotPiece {
  at::Tensor table;
  at::Tensor index;
  int64_t column = 0;
};

// The scorer's input for B lists of L slots: slot s = list * L + position.
struct SlotInput {
  std::vector<SlotPiece> pieces;
  int64_t lists = 0, length = 0, width = 0;  // B, L, the row's size D
  int64_t slots() const { return lists * length; }
};

// A linear layer that reads the row from column `column` of its weight (a layer over a longer input
// of which the row is a part, such as PRM's MLP over concat(attention, h)).
struct SlotLayer {
  at::Tensor weight;  // [out, >= column + D]
  at::Tensor bias;    // [out] or undefined
  int64_t column = 0;
};

// x W^T + bias of every layer for every slot: one [slots, out] per layer, where W is columns
// [column, column + D) of the layer's weight. Gradients flow to every table and layer. On
// fp32 CPU tensors one autograd node, in which each piece is projected through its columns: a table
// with fewer rows than there are slots is projected and then gathered, any other piece gathered and
// then projected. Elsewhere (CUDA, bf16 autocast) the rows are built and multiplied once.
std::vector<at::Tensor> project_slots(const SlotInput& in, const std::vector<SlotLayer>& layers);
at::Tensor project_slots(const SlotInput& in, const at::Tensor& w, const at::Tensor& bias);

// Whether project_slots runs as one node for layers with this weight: fp32 on the CPU, autocast off.
bool slot_projection_is_one_node(const at::Tensor& weight);

// The rows themselves, [B, L, D] (for layers that need x, such as torch::nn::GRU off the fast path).
at::Tensor materialize_slots(const SlotInput& in);

}  // namespace rlrf
