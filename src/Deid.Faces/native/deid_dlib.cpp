// Minimal C ABI over Debian's dlib for Deid: HOG face detection and the 68-point shape predictor.
// Everything is exception-safe at the boundary: a C++ exception becomes a negative return code and a
// message retrievable with deid_last_error() (per thread).
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include <cstring>
#include <string>

namespace {
thread_local std::string g_error;

int fail(const std::exception& e) { g_error = e.what(); return -1; }

}  // namespace

// A caller's 8-bit grey buffer seen as a dlib (read-only) generic image without copying it: the detector and the
// shape predictor only read their input, and a copy per call (per face, for the predictor) was pure overhead.
// The accessors live beside the type so dlib's templates find them by argument-dependent lookup.
namespace deid {
struct gray_view {
    const unsigned char* data;
    long rows, cols, stride;
};
inline long num_rows(const gray_view& v) { return v.rows; }
inline long num_columns(const gray_view& v) { return v.cols; }
inline long width_step(const gray_view& v) { return v.stride; }
inline const void* image_data(const gray_view& v) { return v.data; }
}  // namespace deid

namespace dlib {
template <> struct image_traits<deid::gray_view> { typedef unsigned char pixel_type; };
}  // namespace dlib

namespace {
using deid::gray_view;

// Grey copy of an 8-bit image with 1 (grey) or 3/4 (BGR/BGRA) channels.
void to_gray(const unsigned char* data, int width, int height, int stride, int channels,
             dlib::array2d<unsigned char>& out) {
    out.set_size(height, width);
    for (int y = 0; y < height; ++y) {
        const unsigned char* row = data + (size_t)y * stride;
        unsigned char* dst = &out[y][0];
        if (channels == 1) {
            std::memcpy(dst, row, width);
        } else {
            for (int x = 0; x < width; ++x) {
                const unsigned char* p = row + x * channels;
                // ITU-R BT.601 luma, the weights OpenCV and dlib use; p is B,G,R.
                dst[x] = (unsigned char)((p[0] * 1868 + p[1] * 9617 + p[2] * 4899 + 8192) >> 14);
            }
        }
    }
}
}  // namespace

#define DEID_API __attribute__((visibility("default")))
extern "C" {

DEID_API const char* deid_last_error() { return g_error.c_str(); }

// Which instruction set dlib's templates were compiled for in this build of the shim (the loader picks one).
DEID_API const char* deid_simd() {
#if defined(DLIB_HAVE_AVX2)
    return "avx2";
#elif defined(DLIB_HAVE_AVX)
    return "avx";
#elif defined(DLIB_HAVE_SSE41)
    return "sse4.1";
#elif defined(DLIB_HAVE_SSE2)
    return "sse2";
#else
    return "none";
#endif
}

DEID_API void* deid_detector_new() {
    try { return new dlib::frontal_face_detector(dlib::get_frontal_face_detector()); }
    catch (const std::exception& e) { fail(e); return nullptr; }
}

DEID_API void deid_detector_free(void* detector) { delete static_cast<dlib::frontal_face_detector*>(detector); }

// Writes up to max_faces detections as (left, top, right, bottom, score) doubles; returns the count or -1.
DEID_API int deid_detect(void* detector, const unsigned char* data, int width, int height, int stride, int channels,
                int upsample, double adjust_threshold, double* out, int max_faces) {
    try {
        auto& det = *static_cast<dlib::frontal_face_detector*>(detector);
        std::vector<dlib::rect_detection> dets;
        double scale = 1.0;
        if (channels == 1 && upsample == 0) {
            det(gray_view{data, height, width, stride}, dets, adjust_threshold);
        } else {
            dlib::array2d<unsigned char> img;
            to_gray(data, width, height, stride, channels, img);
            for (int i = 0; i < upsample; ++i) { dlib::pyramid_up(img); scale *= 2.0; }
            det(img, dets, adjust_threshold);
        }
        int n = (int)std::min<size_t>(dets.size(), (size_t)max_faces);
        for (int i = 0; i < n; ++i) {
            const auto& r = dets[i].rect;
            out[i * 5 + 0] = r.left() / scale;
            out[i * 5 + 1] = r.top() / scale;
            out[i * 5 + 2] = (r.right() + 1) / scale;
            out[i * 5 + 3] = (r.bottom() + 1) / scale;
            out[i * 5 + 4] = dets[i].detection_confidence;
        }
        return n;
    } catch (const std::exception& e) { return fail(e); }
}

DEID_API void* deid_predictor_load(const char* path) {
    try {
        auto* sp = new dlib::shape_predictor();
        dlib::deserialize(path) >> *sp;
        return sp;
    } catch (const std::exception& e) { fail(e); return nullptr; }
}

DEID_API void deid_predictor_free(void* predictor) { delete static_cast<dlib::shape_predictor*>(predictor); }

// The predictor is immutable after loading, so concurrent calls on one instance are safe.
// Box is (left, top, right, bottom) in pixels; writes num_parts (x, y) float pairs; returns num_parts or -1.
DEID_API int deid_predict(void* predictor, const unsigned char* data, int width, int height, int stride, int channels,
                 double left, double top, double right, double bottom, float* out_xy, int max_parts) {
    try {
        auto& sp = *static_cast<dlib::shape_predictor*>(predictor);
        dlib::rectangle rect((long)std::lround(left), (long)std::lround(top),
                             (long)std::lround(right) - 1, (long)std::lround(bottom) - 1);
        dlib::full_object_detection shape;
        if (channels == 1) {
            shape = sp(gray_view{data, height, width, stride}, rect);
        } else {
            dlib::array2d<unsigned char> img;
            to_gray(data, width, height, stride, channels, img);
            shape = sp(img, rect);
        }
        int n = (int)std::min<unsigned long>(shape.num_parts(), (unsigned long)max_parts);
        for (int i = 0; i < n; ++i) {
            out_xy[i * 2 + 0] = (float)shape.part(i).x();
            out_xy[i * 2 + 1] = (float)shape.part(i).y();
        }
        return n;
    } catch (const std::exception& e) { return fail(e); }
}

}  // extern "C"
