#include "predict/tree_shap.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

namespace infera::predict {
namespace {

using nlohmann::json;

// Entries of all tables together, at most (4 bytes each): 256 MiB.
constexpr size_t kMaxTableValues = size_t{64} << 20;

int as_int(const json& v) { return v.is_string() ? std::stoi(v.get<std::string>()) : v.get<int>(); }

}  // namespace

size_t TreeShap::table_bytes() const { return values_.size() * sizeof(float); }

Result<std::unique_ptr<TreeShap>> TreeShap::from_model_json(const json& model, std::vector<float> bias) {
  std::unique_ptr<TreeShap> shap(new TreeShap());
  try {
    const json& learner = model.at("learner");
    const json& booster = learner.at("gradient_booster");
    if (booster.at("name") != "gbtree") {
      return Status::Unsupported(fmt::format("booster '{}' (only gbtree is tabulated)",
                                             booster.at("name").get<std::string>()));
    }
    const json& param = learner.at("learner_model_param");
    shap->num_features_ = as_int(param.at("num_feature"));
    const int num_class = param.contains("num_class") ? as_int(param["num_class"]) : 0;
    if (param.contains("num_target") && as_int(param["num_target"]) > 1) {
      return Status::Unsupported("multi-target models");
    }
    shap->groups_ = num_class > 1 ? num_class : 1;
    if (static_cast<int>(bias.size()) != shap->groups_) {
      return Status::InvalidArgument(fmt::format("{} bias values for {} groups", bias.size(), shap->groups_));
    }
    shap->bias_ = std::move(bias);
    const json& trees = booster.at("model").at("trees");
    const json& tree_info = booster.at("model").at("tree_info");
    // Shapley weights |S|!(d-|S|-1)!/d!, by d and |S|.
    double weight[kMaxDepth + 1][kMaxDepth] = {};
    for (int d = 1; d <= kMaxDepth; ++d) {
      for (int s = 0; s < d; ++s) {
        weight[d][s] = std::tgamma(s + 1) * std::tgamma(d - s) / std::tgamma(d + 1);
      }
    }
    for (size_t t = 0; t < trees.size(); ++t) {
      const json& j = trees[t];
      if (as_int(j.at("tree_param").at("num_deleted")) != 0) return Status::Unsupported("trees with deleted nodes");
      for (const json& st : j.at("split_type")) {
        if (st.get<int>() != 0) return Status::Unsupported("categorical splits");
      }
      Tree tree;
      tree.group = tree_info.at(t).get<int>();
      if (tree.group < 0 || tree.group >= shap->groups_) return Status::InvalidArgument("tree_info out of range");
      const auto left = j.at("left_children").get<std::vector<int32_t>>();
      const auto right = j.at("right_children").get<std::vector<int32_t>>();
      const auto cover = j.at("sum_hessian").get<std::vector<double>>();
      tree.split_index = j.at("split_indices").get<std::vector<int32_t>>();
      tree.split_value = j.at("split_conditions").get<std::vector<float>>();
      tree.default_left = j.at("default_left").get<std::vector<uint8_t>>();
      const size_t n = left.size();
      if (right.size() != n || cover.size() != n || tree.split_index.size() != n ||
          tree.split_value.size() != n || tree.default_left.size() != n || n == 0) {
        return Status::InvalidArgument(fmt::format("tree {}: node arrays of different lengths", t));
      }
      for (size_t i = 0; i < n; ++i) {
        if (left[i] >= 0 && (left[i] >= static_cast<int32_t>(n) || right[i] < 0 ||
                             right[i] >= static_cast<int32_t>(n) ||
                             tree.split_index[i] < 0 || tree.split_index[i] >= shap->num_features_)) {
          return Status::InvalidArgument(fmt::format("tree {}: node {} is malformed", t, i));
        }
      }
      const auto parents = j.at("parents").get<std::vector<int32_t>>();
      if (parents.size() != n) return Status::InvalidArgument(fmt::format("tree {}: no parents", t));
      std::vector<int32_t> stack = {0};
      while (!stack.empty()) {
        const int32_t node = stack.back();
        stack.pop_back();
        if (left[static_cast<size_t>(node)] >= 0) {
          stack.push_back(right[static_cast<size_t>(node)]);
          stack.push_back(left[static_cast<size_t>(node)]);
          if (stack.size() > n) return Status::InvalidArgument(fmt::format("tree {}: not a tree", t));
          continue;
        }
        // A leaf: its path from the root, read back through the parents.
        std::vector<std::pair<int32_t, bool>> steps;
        for (int32_t c = node; c != 0;) {
          const int32_t p = parents[static_cast<size_t>(c)];
          if (p < 0 || p >= static_cast<int32_t>(n) || steps.size() >= 64) {
            return Status::InvalidArgument(fmt::format("tree {}: node {} has a bad path", t, node));
          }
          steps.push_back({p, left[static_cast<size_t>(p)] == c});
          c = p;
        }
        Leaf leaf{};
        leaf.first_step = static_cast<uint32_t>(tree.steps.size());
        leaf.n_steps = static_cast<uint32_t>(steps.size());
        double zero[kMaxDepth];
        int d = 0;
        for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
          const auto [p, goes_left] = *it;
          const int32_t child = goes_left ? left[static_cast<size_t>(p)] : right[static_cast<size_t>(p)];
          const int feature = tree.split_index[static_cast<size_t>(p)];
          int slot = 0;
          while (slot < d && leaf.features[slot] != feature) ++slot;
          if (slot == d) {
            if (d == kMaxDepth) {
              return Status::Unsupported(fmt::format("paths testing more than {} features", kMaxDepth));
            }
            leaf.features[d] = feature;
            zero[d] = 1.0;
            ++d;
          }
          const double parent_cover = cover[static_cast<size_t>(p)];
          zero[slot] *= parent_cover > 0 ? cover[static_cast<size_t>(child)] / parent_cover : 0.0;
          tree.steps.push_back({p, static_cast<uint8_t>(slot), goes_left});
        }
        leaf.d = static_cast<uint8_t>(d);
        leaf.table = static_cast<uint32_t>(shap->values_.size());
        const size_t entries = (size_t{1} << d) * static_cast<size_t>(d);
        if (shap->values_.size() + entries > kMaxTableValues) {
          return Status::Unsupported("tables larger than 256 MiB (trees too deep)");
        }
        const double value = tree.split_value[static_cast<size_t>(node)];
        for (uint32_t mask = 0; mask < (1u << d); ++mask) {
          for (int jj = 0; jj < d; ++jj) {
            // coef[s]: sum over subsets S of the hot features other than j, |S| = s, of the
            // product of z over the hot ones not in S; cold features always contribute z.
            double coef[kMaxDepth + 1] = {1.0};
            int hot = 0;
            double cold = 1.0;
            for (int k = 0; k < d; ++k) {
              if (k == jj) continue;
              if (mask & (1u << k)) {
                for (int s = hot + 1; s >= 1; --s) coef[s] = coef[s] * zero[k] + coef[s - 1];
                coef[0] *= zero[k];
                ++hot;
              } else {
                cold *= zero[k];
              }
            }
            double sum = 0;
            for (int s = 0; s <= hot; ++s) sum += weight[d][s] * coef[s];
            const double one = (mask >> jj) & 1u;
            shap->values_.push_back(static_cast<float>(value * (one - zero[jj]) * cold * sum));
          }
        }
        tree.leaves.push_back(leaf);
      }
      shap->trees_.push_back(std::move(tree));
    }
  } catch (const std::exception& e) {
    return Status::InvalidArgument(fmt::format("model JSON: {}", e.what()));
  }
  return shap;
}

void TreeShap::explain(const float* data, int rows, std::vector<float>& out) const {
  const size_t width = static_cast<size_t>(num_features_) + 1;
  out.assign(static_cast<size_t>(rows) * static_cast<size_t>(groups_) * width, 0.0f);
  std::vector<uint8_t> goes_left;
  for (int r = 0; r < rows; ++r) {
    const float* x = data + static_cast<size_t>(r) * static_cast<size_t>(num_features_);
    float* row_out = out.data() + static_cast<size_t>(r) * static_cast<size_t>(groups_) * width;
    for (const Tree& tree : trees_) {
      goes_left.resize(tree.split_index.size());
      for (size_t n = 0; n < goes_left.size(); ++n) {
        const float v = x[tree.split_index[n]];
        goes_left[n] = std::isnan(v) ? tree.default_left[n] : static_cast<uint8_t>(v < tree.split_value[n]);
      }
      float* phi = row_out + static_cast<size_t>(tree.group) * width;
      for (const Leaf& leaf : tree.leaves) {
        uint32_t mask = (1u << leaf.d) - 1;
        const Step* step = tree.steps.data() + leaf.first_step;
        for (uint32_t s = 0; s < leaf.n_steps; ++s) {
          if (goes_left[static_cast<size_t>(step[s].node)] != static_cast<uint8_t>(step[s].goes_left)) {
            mask &= ~(1u << step[s].slot);
          }
        }
        const float* v = values_.data() + leaf.table + static_cast<size_t>(mask) * leaf.d;
        for (int k = 0; k < leaf.d; ++k) phi[leaf.features[k]] += v[k];
      }
    }
    for (int g = 0; g < groups_; ++g) row_out[static_cast<size_t>(g) * width + num_features_] = bias_[static_cast<size_t>(g)];
  }
}

}  // namespace infera::predict
