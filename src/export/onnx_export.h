#pragma once
// Export a lowered network to ONNX: FP32, or INT8 in QDQ form (QuantizeLinear/DequantizeLinear pairs with the
// runtime's scales and zero points on every activation tensor, s8 per-channel weights and s32 biases behind
// DequantizeLinear), so ONNX Runtime runs it with its own INT8 kernels. Every model passes the ONNX checker
// before it is written.
#include <string>
#include <utility>
#include <vector>

#include "runtime/onednn_plan.h"
#include "runtime/program.h"
#include "runtime/quant.h"

namespace qnas::exporter {

struct OnnxOptions {
  runtime::Precision precision = runtime::Precision::kFp32;
  int opset = 17;
  // INT8 only: a weight tensor whose codes all lie in [-7, 7] (trained at 4 bits or fewer) is stored as INT4
  // (two codes per byte) behind its DequantizeLinear, which needs opset 21 (raised to it). Size only: the
  // codes and what the graph computes are those of the INT8 export. Debian's ONNX 1.12 checker knows neither
  // INT4 nor opset 21, so the INT8 form of the same graph is what passes the checker; ONNX Runtime >= 1.18
  // runs INT4.
  bool int4_weights = false;
  std::string graph_name = "qnas";
  // Written as the model's metadata_props: what a deployer needs besides the graph (input shape,
  // normalisation, class names, space and subnet encodings, qnas version).
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Serialized ModelProto. INT8 needs `quant`.
std::string export_onnx(const runtime::Program& program, const runtime::Weights& weights,
                        const runtime::QuantParams* quant, const OnnxOptions& options);

// export_onnx, checked and written atomically.
void write_onnx(const std::string& path, const runtime::Program& program, const runtime::Weights& weights,
                const runtime::QuantParams* quant, const OnnxOptions& options);

// The metadata_props of an ONNX file; a qnas::Error naming the file when it is missing or not ONNX.
std::vector<std::pair<std::string, std::string>> read_onnx_metadata(const std::string& path);

// Runs the ONNX checker on a serialized model; fails with its message.
void check_onnx(const std::string& serialized, const std::string& what);

}  // namespace qnas::exporter
