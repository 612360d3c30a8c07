#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace infera::engine {

Sampler::Sampler(const SamplerParams& params, int32_t n_vocab)
    : params_(params), n_vocab_(n_vocab), rng_(params.seed) {
  candidates_.reserve(static_cast<size_t>(n_vocab));
  recent_.reserve(static_cast<size_t>(std::max(0, params.penalty_last_n)));
}

void Sampler::remember(int32_t token) {
  if (params_.penalty_last_n <= 0) return;
  if (recent_.size() < static_cast<size_t>(params_.penalty_last_n)) {
    recent_.push_back(token);
  } else {
    int32_t old = recent_[recent_next_];
    if (--counts_[old] == 0) counts_.erase(old);
    recent_[recent_next_] = token;
    recent_next_ = (recent_next_ + 1) % recent_.size();
  }
  ++counts_[token];
}

void Sampler::accept(std::span<const int32_t> tokens) {
  const size_t keep = static_cast<size_t>(std::max(0, params_.penalty_last_n));
  const size_t skip = tokens.size() > keep ? tokens.size() - keep : 0;
  for (int32_t t : tokens.subspan(skip)) remember(t);
}

int32_t Sampler::sample(const float* logits) {
  const bool penalize = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                        params_.frequency_penalty != 0.0f;
  auto adjusted = [&](int32_t id) {
    float l = logits[id];
    if (!penalize) return l;
    auto it = counts_.find(id);
    if (it == counts_.end()) return l;
    if (params_.repetition_penalty != 1.0f) {
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
    return l - params_.presence_penalty -
           params_.frequency_penalty * static_cast<float>(it->second);
  };

  int32_t chosen = 0;
  if (params_.temperature <= 0.0f) {
    float best = adjusted(0);
    for (int32_t id = 1; id < n_vocab_; ++id) {
      float l = penalize ? adjusted(id) : logits[id];
      if (l > best) {
        best = l;
        chosen = id;
      }
    }
    remember(chosen);
    return chosen;
  }

  candidates_.clear();
  for (int32_t id = 0; id < n_vocab_; ++id) candidates_.push_back({id, adjusted(id)});
  auto by_value = [](const Candidate& a, const Candidate& b) {
    return a.value > b.value || (a.value == b.value && a.id < b.id);
  };
  size_t n = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(),
                      by_value);
    n = static_cast<size_t>(params_.top_k);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_value);
  }
  // Softmax with temperature over the kept candidates (sorted, so [0] is the max).
  const float max_logit = candidates_[0].value;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    candidates_[i].value = std::exp((candidates_[i].value - max_logit) / params_.temperature);
    sum += candidates_[i].value;
  }
  for (size_t i = 0; i < n; ++i)
    candidates_[i].value = static_cast<float>(candidates_[i].value / sum);
  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    size_t keep = 0;
    while (keep < n) {
      cumulative += candidates_[keep].value;
      ++keep;
      if (cumulative >= params_.top_p) break;
    }
    n = std::max<size_t>(keep, 1);
  }
  if (params_.min_p > 0.0f) {
    const float floor = candidates_[0].value * params_.min_p;
    size_t keep = 1;
    while (keep < n && candidates_[keep].value >= floor) ++keep;
    n = keep;
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += candidates_[i].value;
  double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  chosen = candidates_[n - 1].id;
  for (size_t i = 0; i < n; ++i) {
    r -= candidates_[i].value;
    if (r <= 0) {
      chosen = candidates_[i].id;
      break;
    }
  }
  remember(chosen);
  return chosen;
}

}  // namespace infera::engine
