#include "predict/image_preprocess.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/img_hash.hpp>

namespace infera::predict {
namespace {

using nlohmann::json;

constexpr size_t kMaxPixels = size_t{64} << 20;  // refuse decompression bombs

Result<cv::Mat> decode(std::string_view encoded) {
  if (encoded.empty()) return Status::InvalidArgument("the image is empty");
  cv::Mat raw(1, static_cast<int>(encoded.size()), CV_8UC1, const_cast<char*>(encoded.data()));
  cv::Mat image;
  try {
    image = cv::imdecode(raw, cv::IMREAD_COLOR);
  } catch (const cv::Exception&) {
    image.release();
  }
  if (image.empty()) {
    return Status::InvalidArgument(
        "not a decodable image (JPEG, PNG, WebP, BMP, TIFF or PPM expected)");
  }
  if (static_cast<size_t>(image.rows) * static_cast<size_t>(image.cols) > kMaxPixels) {
    return Status::InvalidArgument(fmt::format("the image is {}x{} pixels; at most 64 Mpixels", image.cols, image.rows));
  }
  return image;
}

}  // namespace

json ImageSpec::to_json() const {
  return {{"size", {height, width}},
          {"channel_order", rgb ? "RGB" : "BGR"},
          {"layout", chw ? "CHW" : "HWC"},
          {"scale", scale},
          {"mean", {mean[0], mean[1], mean[2]}},
          {"std", {std[0], std[1], std[2]}}};
}

Result<ImageSpec> parse_image_spec(const json& j) {
  ImageSpec s;
  if (!j.is_object()) return Status::InvalidArgument("'image' must be an object");
  for (const auto& [key, v] : j.items()) {
    if (key == "size") {
      if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() || !v[1].is_number_integer() ||
          v[0].get<int>() < 1 || v[1].get<int>() < 1 || v[0].get<int>() > 4096 || v[1].get<int>() > 4096) {
        return Status::InvalidArgument("'image.size' must be [height, width], 1..4096 each");
      }
      s.height = v[0].get<int>();
      s.width = v[1].get<int>();
    } else if (key == "channel_order") {
      if (v != "RGB" && v != "BGR") return Status::InvalidArgument("'image.channel_order' must be \"RGB\" or \"BGR\"");
      s.rgb = v == "RGB";
    } else if (key == "layout") {
      if (v != "CHW" && v != "HWC") return Status::InvalidArgument("'image.layout' must be \"CHW\" or \"HWC\"");
      s.chw = v == "CHW";
    } else if (key == "scale") {
      if (!v.is_number() || v.get<double>() <= 0) return Status::InvalidArgument("'image.scale' must be a positive number");
      s.scale = v.get<double>();
    } else if (key == "mean" || key == "std") {
      if (!v.is_array() || v.size() != 3) {
        return Status::InvalidArgument(fmt::format("'image.{}' must be three numbers", key));
      }
      for (size_t c = 0; c < 3; ++c) {
        if (!v[c].is_number() || (key == "std" && v[c].get<double>() <= 0)) {
          return Status::InvalidArgument(fmt::format("'image.{}' must be three numbers{}", key,
                                                     key == "std" ? ", all positive" : ""));
        }
        (key == "mean" ? s.mean : s.std)[c] = v[c].get<double>();
      }
    } else {
      return Status::InvalidArgument(fmt::format(
          "unknown key 'image.{}' (size, channel_order, layout, scale, mean, std)", key));
    }
  }
  return s;
}

Result<std::vector<float>> image_to_row(std::string_view encoded, const ImageSpec& spec) {
  auto decoded = decode(encoded);
  if (!decoded.ok()) return decoded.status();
  cv::Mat resized;
  cv::resize(*decoded, resized, cv::Size(spec.width, spec.height), 0, 0, cv::INTER_LINEAR);
  if (spec.rgb) cv::cvtColor(resized, resized, cv::COLOR_BGR2RGB);
  const size_t hw = static_cast<size_t>(spec.height) * static_cast<size_t>(spec.width);
  std::vector<float> row(3 * hw);
  for (int y = 0; y < spec.height; ++y) {
    const uint8_t* p = resized.ptr<uint8_t>(y);
    for (int x = 0; x < spec.width; ++x) {
      const size_t pixel = static_cast<size_t>(y) * static_cast<size_t>(spec.width) + static_cast<size_t>(x);
      for (int c = 0; c < 3; ++c) {
        const double v = (p[x * 3 + c] * spec.scale - spec.mean[c]) / spec.std[c];
        row[spec.chw ? static_cast<size_t>(c) * hw + pixel : pixel * 3 + static_cast<size_t>(c)] =
            static_cast<float>(v);
      }
    }
  }
  return row;
}

Result<uint64_t> perceptual_hash(std::string_view encoded) {
  auto decoded = decode(encoded);
  if (!decoded.ok()) return decoded.status();
  cv::Mat hash;
  cv::img_hash::pHash(*decoded, hash);
  if (hash.total() != 8) return Status::Internal("perceptual hash is not 64 bits");
  uint64_t h = 0;
  for (int i = 0; i < 8; ++i) h = (h << 8) | hash.at<uint8_t>(0, i);
  return h;
}

}  // namespace infera::predict
