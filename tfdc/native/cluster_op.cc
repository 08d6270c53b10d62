// TfdcClusterProject: the weight-sharing projection of tfdc.ClusteredFineTuning
// as one fused TensorFlow CPU kernel.
//
// Given a kernel after the optimizer step, the cluster map (sorted nonzero
// positions, the cluster of each) and the previous centroids, it
//   1. sums each cluster's members (one pass over the nonzeros),
//   2. makes the new centroids: mean = sum * inv_count, or
//      sum update = old + (sum - count * old); a centroid that would be an
//      exact 0.0 keeps its old value,
//   3. writes the projected kernel: centroid at every member, 0 elsewhere.
// TensorFlow's sparse_dense_matmul does steps 1 and 3 as two ops, with more
// work per nonzero; here each is one pass. The sums are formed in four
// interleaved partial sums (member i goes to partial i mod 4, then
// (p0 + p1) + (p2 + p3)), so they can differ from the sparse-matmul path's
// in the last bits; tfdc/cluster_op.py checks the build against exactly this
// order.
//
// Built at run time against the installed TensorFlow by tfdc/cluster_op.py
// (the ABI of TensorFlow's C++ API is tied to its exact version), verified in
// a subprocess before first use. Not built: tfdc uses sparse_dense_matmul.

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdc {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

// A typed error instead of an out-of-bounds access (tf.errors.InvalidArgumentError).
template <typename... Args>
absl::Status InvalidArgument(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

REGISTER_OP("TfdcClusterProject")
    .Input("kernel: float")
    .Input("positions: int32")
    .Input("assignment: int32")
    .Input("scale: float")  // mean: 1 / count per cluster; sum: count
    .Input("old: float")
    .Attr("mean: bool")
    .Output("projected: float")
    .Output("centroids: float")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(4));
      return ::absl::OkStatus();
    });

class ClusterProjectOp : public OpKernel {
 public:
  explicit ClusterProjectOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mean", &mean_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& kernel = ctx->input(0);
    const Tensor& positions = ctx->input(1);
    const Tensor& assignment = ctx->input(2);
    const Tensor& scale = ctx->input(3);
    const Tensor& old = ctx->input(4);
    const int64_t n = kernel.NumElements();
    const int64_t nnz = positions.NumElements();
    const int64_t k = old.NumElements();
    OP_REQUIRES(ctx, assignment.NumElements() == nnz && scale.NumElements() == k,
                InvalidArgument("TfdcClusterProject: ", nnz, " positions, ",
                                assignment.NumElements(), " assignments, ", k, " centroids, ",
                                scale.NumElements(), " scales"));
    const float* w = kernel.flat<float>().data();
    const int32_t* pos = positions.flat<int32_t>().data();
    const int32_t* asg = assignment.flat<int32_t>().data();
    const float* sc = scale.flat<float>().data();
    const float* prev = old.flat<float>().data();

    // Pass 1 (the nonzeros only): each cluster's sum, checking the map as it
    // goes; nothing is written before the whole map has been checked. Four
    // interleaved accumulators: consecutive members of one cluster would
    // otherwise make one long add-through-memory dependency chain.
    std::vector<float> acc(4 * static_cast<size_t>(k), 0.0f);
    int64_t last = -1;
    for (int64_t i = 0; i < nnz; ++i) {
      const int64_t p = pos[i], a = asg[i];
      OP_REQUIRES(ctx, p > last && p < n && a >= 0 && a < k,
                  InvalidArgument("TfdcClusterProject: entry ", i, " (position ", p,
                                  ", cluster ", a, ") is not an increasing position in a ",
                                  "kernel of ", n, " weights with a cluster below ", k));
      acc[(i & 3) * k + a] += w[p];
      last = p;
    }
    std::vector<float> sums(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) {
      sums[j] = (acc[j] + acc[k + j]) + (acc[2 * k + j] + acc[3 * k + j]);
    }
    Tensor* projected = nullptr;
    Tensor* centroids = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, kernel.shape(), &projected));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, old.shape(), &centroids));
    float* out = projected->flat<float>().data();
    float* cen = centroids->flat<float>().data();
    for (int64_t j = 0; j < k; ++j) {
      float v;
      if (mean_) {
        v = sums[j] * sc[j];
      } else {
        const float moved = sums[j] - sc[j] * prev[j];
        v = prev[j] + moved;
      }
      cen[j] = (v == 0.0f) ? prev[j] : v;
    }
    // Pass 2: zero the kernel in one call, then the members.
    std::memset(out, 0, static_cast<size_t>(n) * sizeof(float));
    for (int64_t i = 0; i < nnz; ++i) out[pos[i]] = cen[asg[i]];
  }

 private:
  bool mean_ = true;
};

REGISTER_KERNEL_BUILDER(Name("TfdcClusterProject").Device(::tensorflow::DEVICE_CPU),
                        ClusterProjectOp);

}  // namespace tfdc
