#include "export/onnx_export.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include "core/error.h"
#include "core/fs.h"

namespace qnas::exporter {
namespace {

// TensorProto::INT4 of ONNX >= 1.16 (opset 21); Debian's ONNX 1.12 headers predate it. data_type is a plain
// int32 field, so the value serialises as it is.
constexpr int kOnnxInt4 = 22;
constexpr int kInt4Opset = 21;

using runtime::Activation;
using runtime::OpKind;
using runtime::Step;

class GraphBuilder {
 public:
  GraphBuilder(onnx::GraphProto& graph, const runtime::Program& program, const runtime::Weights& weights,
               const runtime::QuantParams* quant, bool int4_weights)
      : g_(graph), program_(program), weights_(weights), quant_(quant), int4_weights_(int4_weights) {}

  void build() {
    const auto& in = program_.tensors[program_.input];
    add_io(g_.add_input(), "image", {1, in.channels, in.hw, in.hw});
    names_.assign(program_.tensors.size(), "");
    names_[program_.input] = requantize("image", program_.input);
    for (size_t i = 0; i < program_.steps.size(); ++i) step(i);
    const auto& out = program_.tensors[program_.output];
    const std::vector<int64_t> out_dims = out.is_logits
                                              ? std::vector<int64_t>{1, out.channels}
                                              : std::vector<int64_t>{1, out.channels, out.hw, out.hw};
    add_node("Identity", {names_[program_.output]}, {"logits"});
    add_io(g_.add_output(), "logits", out_dims);
  }

 private:
  bool int8() const { return quant_ != nullptr; }

  std::string fresh(const std::string& stem) { return stem + "_" + std::to_string(counter_++); }

  onnx::NodeProto* add_node(const std::string& op, const std::vector<std::string>& inputs,
                            const std::vector<std::string>& outputs) {
    onnx::NodeProto* n = g_.add_node();
    n->set_op_type(op);
    // Node names carry their own prefix: ONNX Runtime names the nodes its optimisers add "<Op>_<n>", and
    // one of ours with that form once collided with one of them ("two nodes with same node name").
    n->set_name(fresh("qnas_" + op));
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return n;
  }

  static void attr_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  static void attr_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_float(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  static void add_io(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    for (auto d : dims) t->mutable_shape()->add_dim()->set_dim_value(d);
  }

  std::string initializer_f32(const std::string& stem, const std::vector<int64_t>& dims,
                              const std::vector<float>& v) {
    onnx::TensorProto* t = g_.add_initializer();
    t->set_name(fresh(stem));
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (auto d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
    return t->name();
  }
  template <typename T>
  std::string initializer_int(const std::string& stem, int type, const std::vector<int64_t>& dims,
                              const std::vector<T>& v) {
    onnx::TensorProto* t = g_.add_initializer();
    t->set_name(fresh(stem));
    t->set_data_type(type);
    for (auto d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
    return t->name();
  }

  // INT4 codes, two per byte, the first in the low nibble (ONNX's packing); the same for the zero points.
  std::string initializer_int4(const std::string& stem, const std::vector<int64_t>& dims,
                               const std::vector<int8_t>& v) {
    onnx::TensorProto* t = g_.add_initializer();
    t->set_name(fresh(stem));
    t->set_data_type(kOnnxInt4);
    for (auto d : dims) t->add_dims(d);
    std::string packed((v.size() + 1) / 2, '\0');
    for (size_t i = 0; i < v.size(); ++i) {
      const auto nibble = static_cast<unsigned char>(v[i] & 0x0F);
      packed[i / 2] =
          static_cast<char>(static_cast<unsigned char>(packed[i / 2]) | (i % 2 ? nibble << 4 : nibble));
    }
    t->set_raw_data(packed);
    return t->name();
  }

  // A per-channel weight behind its DequantizeLinear: INT4 when asked and every code fits, else INT8.
  std::string dequantized_weight(const std::string& stem, const std::vector<int64_t>& dims,
                                 const std::vector<int8_t>& codes, const std::vector<float>& scales) {
    const auto cout = static_cast<int64_t>(scales.size());
    const bool fits_int4 =
        int4_weights_ && std::all_of(codes.begin(), codes.end(), [](int8_t c) { return c >= -7 && c <= 7; });
    const std::vector<int8_t> zeros(static_cast<size_t>(cout), 0);
    const std::string wq = fits_int4 ? initializer_int4(stem, dims, codes)
                                     : initializer_int<int8_t>(stem, onnx::TensorProto::INT8, dims, codes);
    const std::string ws = initializer_f32(stem + "_scale", {cout}, scales);
    const std::string wz =
        fits_int4 ? initializer_int4(stem + "_zp", {cout}, zeros)
                  : initializer_int<int8_t>(stem + "_zp", onnx::TensorProto::INT8, {cout}, zeros);
    const std::string w = fresh(stem + "_dq");
    attr_int(add_node("DequantizeLinear", {wq, ws, wz}, {w}), "axis", 0);
    return w;
  }

  // Q -> DQ of a float tensor with one tensor's scale, zero point and type: what the runtime does when it
  // stores that tensor as u8/s8 (core/quant_contract.h).
  std::string qdq(const std::string& x, const runtime::TensorQuant& q) {
    if (!int8()) return x;
    const std::string scale = initializer_f32("scale", {}, {q.scale});
    // Signed tensors go out as u8 with their zero point + 128: exactly the values the s8 codes hold, in the
    // U8S8 form ONNX Runtime's x86 kernels prefer.
    const int zero_point = q.zero_point + (q.is_unsigned ? 0 : 128);
    const std::string zero = initializer_int<uint8_t>("zp", onnx::TensorProto::UINT8, {},
                                                      std::vector<uint8_t>{static_cast<uint8_t>(zero_point)});
    const std::string codes = fresh(x + "_q"), real = fresh(x + "_dq");
    add_node("QuantizeLinear", {x, scale, zero}, {codes});
    add_node("DequantizeLinear", {codes, scale, zero}, {real});
    dq_inputs_[real] = {codes, scale, zero};
    return real;
  }

  // The quantised tensor `t` as an input of one more node. ONNX Runtime's QDQ fusion wants one consumer per
  // DequantizeLinear: a second reader of the same tensor (a block input feeding both its shortcut projection
  // and its first conv) gets its own DequantizeLinear of the same codes. One shared DQ made ORT 1.30 reject
  // the model after fusing ("two nodes with same node name").
  std::string input_of(int t) {
    const std::string& name = names_[t];
    auto it = dq_inputs_.find(name);
    if (it == dq_inputs_.end()) return name;
    if (consumed_.insert(name).second) return name;
    const std::string again = fresh(name + "_dq");
    add_node("DequantizeLinear", {it->second[0], it->second[1], it->second[2]}, {again});
    return again;
  }
  std::string requantize(const std::string& x, int tensor) {
    return int8() ? qdq(x, quant_->tensors[tensor]) : x;
  }

  std::string activation(const std::string& x, Activation a) {
    const std::string y = fresh("act");
    switch (a) {
      case Activation::kNone:
        return x;
      case Activation::kRelu:
        add_node("Relu", {x}, {y});
        return y;
      case Activation::kRelu6:
        add_node("Clip", {x, initializer_f32("zero", {}, {0.0f}), initializer_f32("six", {}, {6.0f})}, {y});
        return y;
      case Activation::kHswish:
        add_node("HardSwish", {x}, {y});
        return y;
      case Activation::kSwish: {
        const std::string s = fresh("sigmoid");
        add_node("Sigmoid", {x}, {s});
        add_node("Mul", {x, s}, {y});
        return y;
      }
      case Activation::kHsigmoid: {
        auto* n = add_node("HardSigmoid", {x}, {y});
        attr_float(n, "alpha", 1.0f / 6.0f);
        attr_float(n, "beta", 0.5f);
        return y;
      }
      case Activation::kSigmoid:
        add_node("Sigmoid", {x}, {y});
        return y;
    }
    return x;
  }

  // A conv node with DQ'd s8 per-channel weights and an s32 bias in INT8 (the pattern ONNX Runtime fuses into
  // QLinearConv), plain float weights in FP32.
  std::string conv(const std::string& x, float in_scale, int cin, int cout, int kernel, int stride, int in_hw,
                   int out_hw, bool depthwise, const std::vector<float>& weight,
                   const std::vector<float>& bias, const std::vector<int8_t>* qweight,
                   const std::vector<float>* wscale) {
    const std::vector<int64_t> wdims{cout, depthwise ? 1 : cin, kernel, kernel};
    std::string w, b;
    if (int8()) {
      w = dequantized_weight("w", wdims, *qweight, *wscale);
      std::vector<int32_t> bq(static_cast<size_t>(cout));
      std::vector<float> bs(static_cast<size_t>(cout));
      for (int c = 0; c < cout; ++c) {
        bs[c] = in_scale * (*wscale)[c];
        bq[c] = static_cast<int32_t>(std::nearbyint(bias[c] / bs[c]));
      }
      const std::string bqn = initializer_int<int32_t>("b", onnx::TensorProto::INT32, {cout}, bq);
      const std::string bsn = initializer_f32("b_scale", {cout}, bs);
      const std::string bz = initializer_int<int32_t>("b_zp", onnx::TensorProto::INT32, {cout},
                                                      std::vector<int32_t>(static_cast<size_t>(cout), 0));
      b = fresh("b_dq");
      attr_int(add_node("DequantizeLinear", {bqn, bsn, bz}, {b}), "axis", 0);
    } else {
      w = initializer_f32("w", wdims, weight);
      b = initializer_f32("b", {cout}, bias);
    }
    // Symmetric k/2 padding with ONNX's floor rounding gives exactly the runtime's output size.
    const int pad = kernel / 2;
    (void)in_hw;
    (void)out_hw;
    const std::string y = fresh("conv");
    auto* n = add_node("Conv", {x, w, b}, {y});
    attr_ints(n, "kernel_shape", {kernel, kernel});
    attr_ints(n, "strides", {stride, stride});
    attr_ints(n, "pads", {pad, pad, pad, pad});
    attr_int(n, "group", depthwise ? cin : 1);
    return y;
  }

  void step(size_t i) {
    const Step& s = program_.steps[i];
    const auto& l = s.layer;
    const auto& w = weights_.steps[i];
    const runtime::StepQuant* q = int8() ? &quant_->steps[i] : nullptr;
    const float in_scale = int8() ? quant_->tensors[s.input].scale : 1.0f;
    const std::string x = input_of(s.input);
    std::string y;
    switch (l.op) {
      case OpKind::kConv:
      case OpKind::kDepthwiseConv: {
        y = conv(x, in_scale, l.cin, l.cout, l.kernel, l.stride, l.in_hw, l.out_hw,
                 l.op == OpKind::kDepthwiseConv, w.weight, w.bias, q ? &q->weight : nullptr,
                 q ? &q->weight_scale : nullptr);
        // ONNX Runtime only runs a conv in INT8 when its output is quantized right after it (or after a
        // relu); before any other activation or a residual add, the conv output gets a Q/DQ with the step's
        // scale.
        const bool needs_conv_qdq = l.activation != Activation::kNone && l.activation != Activation::kRelu &&
                                    l.activation != Activation::kRelu6;
        if (int8() && (needs_conv_qdq || s.residual >= 0)) {
          runtime::TensorQuant signed_q = quant_->tensors[s.output];
          signed_q.is_unsigned = false;
          signed_q.zero_point = 0;
          y = qdq(y, signed_q);
        }
        y = activation(y, l.activation);
        if (s.residual >= 0) {
          const std::string sum = fresh("add");
          add_node("Add", {y, input_of(s.residual)}, {sum});
          y = activation(sum, s.post_add);
        }
        y = requantize(y, s.output);
        break;
      }
      case OpKind::kGlobalAvgPool:
        y = fresh("pool");
        add_node("GlobalAveragePool", {x}, {y});
        y = requantize(y, s.output);
        break;
      case OpKind::kSqueezeExcite: {
        std::string p = fresh("se_pool");
        add_node("GlobalAveragePool", {x}, {p});
        if (int8()) p = qdq(p, q->pool);
        std::string m = conv(p, int8() ? q->pool.scale : 1.0f, l.cin, l.se_mid, 1, 1, 1, 1, false, w.weight,
                             w.bias, q ? &q->weight : nullptr, q ? &q->weight_scale : nullptr);
        m = activation(m, Activation::kRelu);
        if (int8()) m = qdq(m, q->mid);
        std::string gate =
            conv(m, int8() ? q->mid.scale : 1.0f, l.se_mid, l.cin, 1, 1, 1, 1, false, w.weight2, w.bias2,
                 q ? &q->weight2 : nullptr, q ? &q->weight2_scale : nullptr);
        gate = activation(gate, Activation::kHsigmoid);
        y = fresh("se");
        add_node("Mul", {x, gate}, {y});
        y = requantize(y, s.output);
        break;
      }
      case OpKind::kLinear: {
        std::string flat = fresh("flat");
        attr_int(add_node("Flatten", {x}, {flat}), "axis", 1);
        // A 1x1 conv on the pooled map would do the same; Gemm keeps the graph readable.
        const std::vector<int64_t> dims{l.cout, l.cin};
        std::string wname, bname;
        if (int8()) {
          wname = dequantized_weight("fc_w", dims, q->weight, q->weight_scale);
        } else {
          wname = initializer_f32("fc_w", dims, w.weight);
        }
        bname = initializer_f32("fc_b", {l.cout}, w.bias);
        y = fresh("fc");
        attr_int(add_node("Gemm", {flat, wname, bname}, {y}), "transB", 1);
        break;
      }
    }
    names_[s.output] = y;
  }

  onnx::GraphProto& g_;
  const runtime::Program& program_;
  const runtime::Weights& weights_;
  const runtime::QuantParams* quant_;
  bool int4_weights_;
  std::vector<std::string> names_;
  std::map<std::string, std::array<std::string, 3>> dq_inputs_;  // DQ output -> its codes, scale, zero point
  std::set<std::string> consumed_;                               // DQ outputs that have a reader
  int counter_ = 0;
};

}  // namespace

std::string export_onnx(const runtime::Program& program, const runtime::Weights& weights,
                        const runtime::QuantParams* quant, const OnnxOptions& options) {
  const bool int8 = options.precision == runtime::Precision::kInt8;
  if (int8 && !quant) fail("an INT8 ONNX export needs quantisation parameters (calibrate first)");
  if (options.int4_weights) {
    if (!int8) fail("INT4 weights need an INT8 export (--precision int8)");
    // The checker sees the INT8 form (same graph, same codes); the INT4 form differs only in how the small
    // weights are stored and in the opset.
    OnnxOptions checked = options;
    checked.int4_weights = false;
    (void)export_onnx(program, weights, quant, checked);
  }
  if (weights.steps.size() != program.steps.size()) fail("weights do not belong to this network");
  onnx::ModelProto model;
  model.set_ir_version(options.int4_weights ? 10 : 8);  // INT4 and opset 21 came with IR version 10
  model.set_producer_name("qnas");
  model.set_producer_version("0.1.0");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.int4_weights ? std::max(options.opset, kInt4Opset) : options.opset);
  for (const auto& [key, value] : options.metadata) {
    auto* prop = model.add_metadata_props();
    prop->set_key(key);
    prop->set_value(value);
  }
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name(options.graph_name);
  GraphBuilder(*graph, program, weights, int8 ? quant : nullptr, options.int4_weights).build();
  std::string bytes;
  if (!model.SerializeToString(&bytes)) fail("could not serialize the ONNX model");
  if (!options.int4_weights) check_onnx(bytes, "exported model");
  return bytes;
}

void check_onnx(const std::string& serialized, const std::string& what) {
  onnx::ModelProto model;
  if (!model.ParseFromString(serialized)) fail("{} is not a valid ONNX protobuf", what);
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    fail("{} fails the ONNX checker: {}", what, e.what());
  }
}

std::vector<std::pair<std::string, std::string>> read_onnx_metadata(const std::string& path) {
  if (!std::filesystem::exists(path)) fail("ONNX file {} does not exist", path);
  onnx::ModelProto model;
  if (!model.ParseFromString(read_text_file(path))) fail("{} is not an ONNX model (it does not parse)", path);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& prop : model.metadata_props()) out.emplace_back(prop.key(), prop.value());
  return out;
}

void write_onnx(const std::string& path, const runtime::Program& program, const runtime::Weights& weights,
                const runtime::QuantParams* quant, const OnnxOptions& options) {
  write_file_atomic(path, export_onnx(program, weights, quant, options));
}

}  // namespace qnas::exporter
