// Images for predictor models (OpenCV 4.6): an encoded image (JPEG, PNG, WebP, BMP, ...)
// decoded, resized and normalised into one row of a CNN's input, and its 64-bit
// perceptual hash (OpenCV contrib's img_hash PHash: DCT of the 32x32 grey image).
//
// Threads: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::predict {

// How a model wants its image input (a tensor config's "image" object):
//   {"size": [H, W], "channel_order": "RGB", "scale": 0.00392157,
//    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "layout": "CHW"}
// value = (pixel * scale - mean[c]) / std[c], pixel 0..255 in the given channel order.
struct ImageSpec {
  int height = 224, width = 224;
  bool rgb = true;          // channel order: RGB (else BGR, OpenCV's own)
  bool chw = true;          // layout of the row: CHW (else HWC)
  double scale = 1.0 / 255.0;
  double mean[3] = {0, 0, 0};
  double std[3] = {1, 1, 1};
  nlohmann::json to_json() const;
};

// Parses the "image" object; errors name the key.
Result<ImageSpec> parse_image_spec(const nlohmann::json& j);

// One row of 3 x height x width floats. InvalidArgument when the bytes are not an image.
Result<std::vector<float>> image_to_row(std::string_view encoded, const ImageSpec& spec);

// The image's 64-bit perceptual hash; InvalidArgument when the bytes are not an image.
Result<uint64_t> perceptual_hash(std::string_view encoded);

}  // namespace infera::predict
