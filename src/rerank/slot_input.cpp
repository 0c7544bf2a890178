// The scorer's input as pieces (slot_input.h).
#include "rerank/slot_input.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <torch/csrc/autograd/custom_function.h>

#include <vector>

#include <fmt/ranges.h>

#include "llm/cpu_clones.h"
#include "runtime/autocast.h"
#include "util/error.h"

namespace rlrf {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// out[s] += table[index[s]] for every slot s: `cols` floats of out's rows (`out_stride` apart) and
// of the table's (`table_stride` apart).
RLRF_CPU_CLONES
void add_gathered(float* out, int64_t out_stride, const float* table, int64_t table_stride, const int64_t* index,
                  int64_t slots, int64_t cols) {
  for (int64_t s = 0; s < slots; ++s) {
    float* o = out + s * out_stride;
    const float* t = table + index[s] * table_stride;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) o[j] += t[j];
  }
}

// d_table[index[s]] += d_out[s] for every slot s: `cols` floats of d_out's rows (`stride` apart)
// and of d_table's (`table_stride` apart).
RLRF_CPU_CLONES
void scatter_added(float* d_table, int64_t table_stride, const float* d_out, int64_t stride, const int64_t* index,
                   int64_t slots, int64_t cols) {
  for (int64_t s = 0; s < slots; ++s) {
    float* t = d_table + index[s] * table_stride;
    const float* o = d_out + s * stride;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) t[j] += o[j];
  }
}

int64_t piece_width(const SlotPiece& p) { return p.table.size(1); }

void check_piece(const SlotInput& in, const SlotPiece& p) {
  RLRF_CHECK(p.table.defined() && p.table.dim() == 2, "scorer input: a piece's table must be 2-d, got {}",
             p.table.defined() ? p.table.sizes() : at::IntArrayRef{});
  RLRF_CHECK(p.column >= 0 && p.column + piece_width(p) <= in.width,
             "scorer input: a piece of {} columns at column {} does not fit a row of {}", piece_width(p), p.column,
             in.width);
  if (p.index.defined())
    RLRF_CHECK(p.index.dim() == 1 && p.index.size(0) == in.slots(), "scorer input: index of {} for {} slots",
               p.index.sizes(), in.slots());
  else
    RLRF_CHECK(p.table.size(0) == in.slots(), "scorer input: {} rows for {} slots", p.table.size(0), in.slots());
}

// Whether a piece is a table with fewer rows than there are slots: projected, then gathered.
bool small_table(const SlotPiece& p, int64_t slots) { return p.index.defined() && p.table.size(0) < slots; }

// The layers' columns over the row [D] stacked: [sum of the layers' rows, D], contiguous.
at::Tensor stacked_weights(at::TensorList weights, const std::vector<int64_t>& columns, int64_t width) {
  std::vector<at::Tensor> w;
  for (size_t l = 0; l < weights.size(); ++l) w.push_back(weights[l].narrow(1, columns[l], width));
  return (w.size() == 1 ? w[0] : at::cat(w, 0)).contiguous();
}

// A piece as the node sees it: an empty index stands for "one row per slot" (an undefined tensor
// cannot be an autograd input).
SlotPiece piece_of(const at::Tensor& table, const at::Tensor& index, int64_t column) {
  return {table, index.numel() > 0 ? index : at::Tensor(), column};
}

// The first layer of a scorer on the input's pieces as one node (fp32 CPU): pieces gathered, then
// one matmul a layer; small tables projected, then added in one pass over each layer's output; the
// gradients of the layers' weights written block by block, where ATen's ops would build a
// full-size gradient (zeros and a copy) for every piece's columns and add them up. One output per
// layer, so that their gradients arrive apart (a slice of one output would zero and copy a
// full-size gradient for each).
// Inputs: tables, indices (empty: rows per slot), weights, biases; saved_data: the pieces' columns,
// the layers' columns, slots and width.
struct SlotProjection : torch::autograd::Function<SlotProjection> {
  static variable_list forward(AutogradContext* ctx, at::TensorList tables, at::TensorList index, at::TensorList weights,
                               at::TensorList biases, const std::vector<int64_t>& piece_columns,
                               const std::vector<int64_t>& layer_columns, int64_t slots, int64_t width) {
    const at::Tensor w = stacked_weights(weights, layer_columns, width);  // [O, D]
    std::vector<at::Tensor> rows, w_rows, saved_index;
    for (size_t p = 0; p < tables.size(); ++p) {
      saved_index.push_back(index[p].contiguous());
      if (small_table(piece_of(tables[p], index[p], piece_columns[p]), slots)) continue;
      rows.push_back(index[p].numel() > 0 ? tables[p].index_select(0, saved_index.back()) : tables[p]);
      w_rows.push_back(w.narrow(1, piece_columns[p], tables[p].size(1)));
    }
    const at::Tensor x = rows.empty() ? at::zeros({slots, 0}, w.options()) : rows.size() == 1 ? rows[0] : at::cat(rows, 1);
    const at::Tensor wx = w_rows.empty() ? at::zeros({w.size(0), 0}, w.options())
                          : w_rows.size() == 1 ? w_rows[0].contiguous() : at::cat(w_rows, 1);  // [O, Dr]
    std::vector<at::Tensor> projected(tables.size());  // [table rows, O] for the small tables
    for (size_t p = 0; p < tables.size(); ++p)
      if (small_table(piece_of(tables[p], index[p], piece_columns[p]), slots))
        projected[p] = at::mm(tables[p], w.narrow(1, piece_columns[p], tables[p].size(1)).t()).contiguous();
    variable_list outs;
    int64_t r0 = 0;  // the layer's first row in the stack
    for (size_t l = 0; l < weights.size(); ++l) {
      const int64_t o = weights[l].size(0);
      at::Tensor out = at::addmm(biases[l], x, wx.narrow(0, r0, o).t());  // [slots, o]
      for (size_t p = 0; p < tables.size(); ++p)
        if (projected[p].defined())
          add_gathered(out.data_ptr<float>(), o, projected[p].data_ptr<float>() + r0, w.size(0),
                       saved_index[p].data_ptr<int64_t>(), slots, o);
      outs.push_back(out);
      r0 += o;
    }
    std::vector<at::Tensor> saved{x, wx, w};
    saved.insert(saved.end(), tables.begin(), tables.end());
    saved.insert(saved.end(), saved_index.begin(), saved_index.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["piece_columns"] = piece_columns;
    ctx->saved_data["layer_columns"] = layer_columns;
    std::vector<int64_t> layer_rows, layer_cols;
    for (const at::Tensor& lw : weights) {
      layer_rows.push_back(lw.size(0));
      layer_cols.push_back(lw.size(1));
    }
    ctx->saved_data["layer_rows"] = layer_rows;
    ctx->saved_data["layer_cols"] = layer_cols;
    ctx->saved_data["width"] = width;
    return outs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::vector<int64_t> piece_columns = ctx->saved_data["piece_columns"].toIntVector();
    const std::vector<int64_t> layer_columns = ctx->saved_data["layer_columns"].toIntVector();
    const std::vector<int64_t> layer_rows = ctx->saved_data["layer_rows"].toIntVector();
    const std::vector<int64_t> layer_cols = ctx->saved_data["layer_cols"].toIntVector();
    const int64_t width = ctx->saved_data["width"].toInt();
    const size_t n_pieces = piece_columns.size(), n_layers = layer_rows.size();
    const at::Tensor &x = saved[0], &wx = saved[1], &w = saved[2];
    const int64_t slots = x.size(0), cols = w.size(0);
    auto table = [&](size_t p) -> const at::Tensor& { return saved[3 + p]; };
    auto index = [&](size_t p) -> const at::Tensor& { return saved[3 + n_pieces + p]; };
    std::vector<at::Tensor> d_out(n_layers);  // per layer, [slots, o] contiguous; undefined: zero
    for (size_t l = 0; l < n_layers; ++l)
      if (grads[l].defined()) d_out[l] = grads[l].contiguous();
    variable_list out(2 * n_pieces + 2 * n_layers + 4);  // the last 4: the forward's non-tensor arguments
    bool weights_needed = false;
    for (size_t l = 0; l < n_layers; ++l) weights_needed = weights_needed || ctx->needs_input_grad(2 * n_pieces + l);
    // Pieces may leave columns uncovered or overlap (positions): zero, then add each block.
    at::Tensor dw = weights_needed ? at::zeros({cols, width}, w.options()) : at::Tensor();  // [O, D]
    // The gathered pieces: one matmul each way per layer for all of them.
    at::Tensor dx, dwx;
    bool rows_needed = false;
    for (size_t p = 0; p < n_pieces; ++p)
      if (!small_table(piece_of(table(p), index(p), piece_columns[p]), slots) && ctx->needs_input_grad(p))
        rows_needed = true;
    if (x.size(1) > 0) {
      // Every block of dwx is written when every layer has a gradient; dx is summed over layers.
      bool all_layers = true;
      for (const at::Tensor& g : d_out) all_layers = all_layers && g.defined();
      if (dw.defined())
        dwx = all_layers ? at::empty({cols, x.size(1)}, w.options()) : at::zeros({cols, x.size(1)}, w.options());
      if (rows_needed) dx = at::zeros({slots, x.size(1)}, w.options());  // [slots, Dr]
      int64_t r0 = 0;
      for (size_t l = 0; l < n_layers; ++l) {
        const int64_t o = layer_rows[l];
        if (d_out[l].defined()) {
          if (dwx.defined()) {
            at::Tensor block = dwx.narrow(0, r0, o);  // rows of a contiguous matrix: contiguous
            at::mm_out(block, d_out[l].t(), x);
          }
          if (dx.defined()) dx.addmm_(d_out[l], wx.narrow(0, r0, o));
        }
        r0 += o;
      }
    }
    int64_t rx = 0;  // next column of x
    for (size_t p = 0; p < n_pieces; ++p) {
      const at::Tensor& t = table(p);
      const int64_t d = t.size(1), c = piece_columns[p];
      if (small_table(piece_of(t, index(p), c), slots)) {
        at::Tensor d_projected = at::zeros({t.size(0), cols}, w.options());  // [table rows, O]
        int64_t r0 = 0;
        for (size_t l = 0; l < n_layers; ++l) {
          const int64_t o = layer_rows[l];
          if (d_out[l].defined())
            scatter_added(d_projected.data_ptr<float>() + r0, cols, d_out[l].data_ptr<float>(), o,
                          index(p).data_ptr<int64_t>(), slots, o);
          r0 += o;
        }
        if (dw.defined()) dw.narrow(1, c, d).add_(at::mm(d_projected.t(), t));
        if (ctx->needs_input_grad(p)) out[p] = at::mm(d_projected, w.narrow(1, c, d));
        continue;
      }
      if (dw.defined()) dw.narrow(1, c, d).add_(dwx.narrow(1, rx, d));
      if (ctx->needs_input_grad(p)) {
        if (index(p).numel() == 0) {
          out[p] = dx.narrow(1, rx, d).contiguous();
        } else {
          at::Tensor d_table = at::zeros({t.size(0), d}, w.options());
          scatter_added(d_table.data_ptr<float>(), d, dx.data_ptr<float>() + rx, dx.size(1), index(p).data_ptr<int64_t>(),
                        slots, d);
          out[p] = d_table;
        }
      }
      rx += d;
    }
    int64_t r0 = 0;  // this layer's first row in the stack
    for (size_t l = 0; l < n_layers; ++l) {
      const size_t wi = 2 * n_pieces + l, bi = 2 * n_pieces + n_layers + l;
      if (ctx->needs_input_grad(wi)) {
        const at::Tensor block = dw.narrow(0, r0, layer_rows[l]);
        if (layer_columns[l] == 0 && layer_cols[l] == width) {
          out[wi] = block;
        } else {
          at::Tensor full = at::zeros({layer_rows[l], layer_cols[l]}, w.options());
          full.narrow(1, layer_columns[l], width).copy_(block);
          out[wi] = full;
        }
      }
      if (ctx->needs_input_grad(bi))
        out[bi] = d_out[l].defined() ? d_out[l].sum(0) : at::zeros({layer_rows[l]}, w.options());
      r0 += layer_rows[l];
    }
    return out;
  }
};

}  // namespace

std::vector<at::Tensor> project_slots(const SlotInput& in, const std::vector<SlotLayer>& layers) {
  RLRF_CHECK(!in.pieces.empty(), "scorer input: no pieces");
  RLRF_CHECK(!layers.empty(), "scorer input: no layer to project with");
  for (const SlotLayer& l : layers)
    RLRF_CHECK(l.weight.dim() == 2 && l.column >= 0 && l.column + in.width <= l.weight.size(1) &&
                   (!l.bias.defined() || (l.bias.dim() == 1 && l.bias.size(0) == l.weight.size(0))),
               "scorer input: weight {} (bias {}) read from column {} for rows of {}", l.weight.sizes(),
               l.bias.defined() ? l.bias.sizes() : at::IntArrayRef{}, l.column, in.width);
  for (const SlotPiece& p : in.pieces) check_piece(in, p);
  if (slot_projection_is_one_node(layers.front().weight)) {
    std::vector<at::Tensor> tables, index, weights, biases;
    std::vector<int64_t> piece_columns, layer_columns;
    for (const SlotPiece& p : in.pieces) {
      tables.push_back(p.table);
      index.push_back(p.index.defined() ? p.index : at::empty({0}, at::kLong));  // empty: rows per slot
      piece_columns.push_back(p.column);
    }
    for (const SlotLayer& l : layers) {
      weights.push_back(l.weight);
      biases.push_back(l.bias.defined() ? l.bias : at::zeros({l.weight.size(0)}, l.weight.options()));
      layer_columns.push_back(l.column);
    }
    // TensorLists, not the vectors: only TensorList arguments are taken as autograd inputs.
    return SlotProjection::apply(at::TensorList(tables), at::TensorList(index), at::TensorList(weights),
                                 at::TensorList(biases), piece_columns, layer_columns, in.slots(), in.width);
  }
  // ATen's ops (CUDA, bf16 autocast): the rows built, then one matmul a layer (a matmul per piece
  // and the adds of their [slots, out] results cost more than the FLOPs they save there).
  const at::Tensor x = materialize_slots(in).view({in.slots(), in.width});
  std::vector<at::Tensor> outs;
  for (const SlotLayer& l : layers) outs.push_back(at::linear(x, l.weight.narrow(1, l.column, in.width), l.bias));
  return outs;
}

bool slot_projection_is_one_node(const at::Tensor& weight) {
  return weight.device().is_cpu() && weight.scalar_type() == at::kFloat && !autocast_on(c10::DeviceType::CPU);
}

at::Tensor project_slots(const SlotInput& in, const at::Tensor& w, const at::Tensor& bias) {
  return project_slots(in, std::vector<SlotLayer>{{w, bias, 0}}).front();
}

at::Tensor materialize_slots(const SlotInput& in) {
  // Pieces that continue the row where the previous one ended are concatenated; the others (such
  // as positions over the whole row) are added to the result.
  std::vector<at::Tensor> row_parts, added;
  int64_t filled = 0;
  for (const SlotPiece& p : in.pieces) {
    check_piece(in, p);
    at::Tensor rows = p.index.defined() ? at::embedding(p.table, p.index) : p.table;
    if (p.column == filled) {
      row_parts.push_back(rows);
      filled += piece_width(p);
    } else {
      added.push_back(at::constant_pad_nd(rows, {p.column, in.width - p.column - piece_width(p)}));
    }
  }
  RLRF_CHECK(filled == in.width, "scorer input: the pieces fill {} of the row's {} columns", filled, in.width);
  at::Tensor x = at::cat(row_parts, 1);
  for (const at::Tensor& a : added) x = x + a;
  return x.view({in.lists, in.length, in.width});
}

}  // namespace rlrf
