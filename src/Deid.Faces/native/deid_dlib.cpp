// Minimal C ABI over Debian's dlib for Deid: HOG face detection and the 68-point shape predictor (run on dlib's own
// model file, with the trees laid out flat: see flat_shape_predictor).
// Everything is exception-safe at the boundary: a C++ exception becomes a negative return code and a
// message retrievable with deid_last_error() (per thread).
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

// ---- dlib's HOG features with the orientation looked up ----
// dlib's fhog (impl_extract_fhog_features, fhog.h) snaps each pixel's gradient to one of 18 orientations by 9 dot
// products, each followed by two compares and four blends: most of its feature extraction's time, and so of its face
// detector's. For an 8-bit grey image the gradient is a pair of integers in [-255, 255], so the orientation its SIMD
// loop picks is a function of 511² inputs: computed once here by that loop's own code on every pair, and looked up
// per pixel. Everything else below (its scalar loop for the last columns included) is dlib's computation unchanged,
// in its order, so the features are dlib's bit for bit: deid_fhog_mismatches compares the two on any image, and the
// tests run it on real frames and on an image that holds every gradient pair.
namespace deid {
class orientation_table {
public:
    static const orientation_table& get() { static const orientation_table table; return table; }
    // Index of the gradient (gx, gy): (gy + 255)·511 + gx + 255.
    unsigned char operator[](int index) const { return bins_[index]; }

private:
    std::vector<unsigned char> bins_;

public:
    // The unit vectors of the orientations, as fhog.h declares them: float matrices comma-initialised from these
    // double literals.
    static const std::array<dlib::matrix<float, 2, 1>, 9>& directions() {
        static const std::array<dlib::matrix<float, 2, 1>, 9> d = [] {
            std::array<dlib::matrix<float, 2, 1>, 9> v;
            v[0] = 1.0000, 0.0000;
            v[1] = 0.9397, 0.3420;
            v[2] = 0.7660, 0.6428;
            v[3] = 0.500, 0.8660;
            v[4] = 0.1736, 0.9848;
            v[5] = -0.1736, 0.9848;
            v[6] = -0.5000, 0.8660;
            v[7] = -0.7660, 0.6428;
            v[8] = -0.9397, 0.3420;
            return v;
        }();
        return d;
    }

private:
    orientation_table() : bins_(511 * 511) {
        using dlib::simd8f;
        using dlib::simd8f_bool;
        const auto& directions = orientation_table::directions();
        for (int gy = -255; gy <= 255; ++gy)
            for (int gx0 = -255; gx0 <= 255; gx0 += 8) {
                simd8f grad_x((float)gx0, (float)(gx0 + 1), (float)(gx0 + 2), (float)(gx0 + 3), (float)(gx0 + 4),
                              (float)(gx0 + 5), (float)(gx0 + 6), (float)(gx0 + 7));
                simd8f grad_y((float)gy);
                // dlib's SIMD loop, as it is.
                simd8f best_dot = 0;
                simd8f best_o = 0;
                for (int o = 0; o < 9; o++) {
                    simd8f dot = grad_x * directions[o](0) + grad_y * directions[o](1);
                    simd8f_bool cmp = dot > best_dot;
                    best_dot = select(cmp, dot, best_dot);
                    dot *= -1;
                    best_o = select(cmp, o, best_o);
                    cmp = dot > best_dot;
                    best_dot = select(cmp, dot, best_dot);
                    best_o = select(cmp, o + 9, best_o);
                }
                dlib::int32 bins[8];
                dlib::simd8i(best_o).store(bins);
                for (int k = 0; k < 8 && gx0 + k <= 255; ++k)
                    bins_[(gy + 255) * 511 + gx0 + k + 255] = (unsigned char)bins[k];
            }
    }
};

// dlib's impl_extract_fhog_features for cell_size > 1 and planar output, for grey pixels, with the table.
template <typename image_type, typename out_type>
void fhog_by_table(const image_type& img_, out_type& hog, int cell_size, int filter_rows_padding, int filter_cols_padding) {
    using namespace dlib;
    using namespace dlib::impl_fhog;
    static_assert(std::is_same<typename image_traits<image_type>::pixel_type, unsigned char>::value,
                  "the orientation table is for 8-bit grey images");
    const orientation_table& table = orientation_table::get();
    const auto& directions = orientation_table::directions();
    const_image_view<image_type> img(img_);

    const int cells_nr = (int)((float)img.nr() / (float)cell_size + 0.5);
    const int cells_nc = (int)((float)img.nc() / (float)cell_size + 0.5);
    if (cells_nr == 0 || cells_nc == 0) { hog.clear(); return; }

    array2d<matrix<float, 18, 1>> hist(cells_nr + 2, cells_nc + 2);
    for (long r = 0; r < hist.nr(); ++r)
        for (long c = 0; c < hist.nc(); ++c) hist[r][c] = 0;
    array2d<float> norm(cells_nr, cells_nc);
    assign_all_pixels(norm, 0);

    const int hog_nr = std::max(cells_nr - 2, 0);
    const int hog_nc = std::max(cells_nc - 2, 0);
    if (hog_nr == 0 || hog_nc == 0) { hog.clear(); return; }
    const int padding_rows_offset = (filter_rows_padding - 1) / 2;
    const int padding_cols_offset = (filter_cols_padding - 1) / 2;
    init_hog(hog, hog_nr, hog_nc, filter_rows_padding, filter_cols_padding);

    const int visible_nr = std::min((long)cells_nr * cell_size, img.nr()) - 1;
    const int visible_nc = std::min((long)cells_nc * cell_size, img.nc()) - 1;

    for (int y = 1; y < visible_nr; y++) {
        const float yp = ((float)y + 0.5) / (float)cell_size - 0.5;
        const int iyp = (int)std::floor(yp);
        const float vy0 = yp - iyp;
        const float vy1 = 1.0 - vy0;
        int x;
        for (x = 1; x < visible_nc - 7; x += 8) {
            simd8f xx(x, x + 1, x + 2, x + 3, x + 4, x + 5, x + 6, x + 7);
            simd8f grad_x, grad_y, v;
            get_gradient(y, x, img, grad_x, grad_y, v);
            simd8f xp = (xx + 0.5) / (float)cell_size + 0.5;
            simd8i ixp = simd8i(xp);
            simd8f vx0 = xp - ixp;
            simd8f vx1 = 1.0f - vx0;
            v = sqrt(v);
            // The gradient's components are whole numbers of grey levels: the index is exact in float.
            int32 _index[8];
            simd8i((grad_y + 255.0f) * 511.0f + (grad_x + 255.0f)).store(_index);
            vx1 *= v;
            vx0 *= v;
            simd8f v11 = vy1 * vx1;
            simd8f v01 = vy0 * vx1;
            simd8f v10 = vy1 * vx0;
            simd8f v00 = vy0 * vx0;
            int32 _ixp[8];  ixp.store(_ixp);
            float _v11[8];  v11.store(_v11);
            float _v01[8];  v01.store(_v01);
            float _v10[8];  v10.store(_v10);
            float _v00[8];  v00.store(_v00);
            for (int k = 0; k < 8; ++k) {
                const int o = table[_index[k]];
                hist[iyp + 1][_ixp[k]](o) += _v11[k];
                hist[iyp + 1 + 1][_ixp[k]](o) += _v01[k];
                hist[iyp + 1][_ixp[k] + 1](o) += _v10[k];
                hist[iyp + 1 + 1][_ixp[k] + 1](o) += _v00[k];
            }
        }
        for (; x < visible_nc; x++) {
            matrix<float, 2, 1> grad;
            float v;
            get_gradient(y, x, img, grad, v);
            // dlib's scalar loop for the last columns, as it is: the table holds what its SIMD loop picks, and the
            // compiler may contract this scalar arithmetic differently.
            float best_dot = 0;
            int best_o = 0;
            for (int o = 0; o < 9; o++) {
                const float dot = dlib::dot(directions[o], grad);
                if (dot > best_dot) { best_dot = dot; best_o = o; }
                else if (-dot > best_dot) { best_dot = -dot; best_o = o + 9; }
            }
            v = std::sqrt(v);
            const float xp = ((double)x + 0.5) / (double)cell_size - 0.5;
            const int ixp = (int)std::floor(xp);
            const float vx0 = xp - ixp;
            const float vx1 = 1.0 - vx0;
            hist[iyp + 1][ixp + 1](best_o) += vy1 * vx1 * v;
            hist[iyp + 1 + 1][ixp + 1](best_o) += vy0 * vx1 * v;
            hist[iyp + 1][ixp + 1 + 1](best_o) += vy1 * vx0 * v;
            hist[iyp + 1 + 1][ixp + 1 + 1](best_o) += vy0 * vx0 * v;
        }
    }

    for (int r = 0; r < cells_nr; ++r)
        for (int c = 0; c < cells_nc; ++c)
            for (int o = 0; o < 9; o++)
                norm[r][c] += (hist[r + 1][c + 1](o) + hist[r + 1][c + 1](o + 9)) * (hist[r + 1][c + 1](o) + hist[r + 1][c + 1](o + 9));

    const float eps = 0.0001;
    for (int y = 0; y < hog_nr; y++) {
        const int yy = y + padding_rows_offset;
        for (int x = 0; x < hog_nc; x++) {
            const simd4f z1(norm[y + 1][x + 1], norm[y][x + 1], norm[y + 1][x], norm[y][x]);
            const simd4f z2(norm[y + 1][x + 2], norm[y][x + 2], norm[y + 1][x + 1], norm[y][x + 1]);
            const simd4f z3(norm[y + 2][x + 1], norm[y + 1][x + 1], norm[y + 2][x], norm[y + 1][x]);
            const simd4f z4(norm[y + 2][x + 2], norm[y + 1][x + 2], norm[y + 2][x + 1], norm[y + 1][x + 1]);
            const simd4f nn = 0.2 * sqrt(z1 + z2 + z3 + z4 + eps);
            const simd4f n = 0.1 / nn;
            simd4f t = 0;
            const int xx = x + padding_cols_offset;
            for (int o = 0; o < 18; o += 3) {
                simd4f temp0(hist[y + 1 + 1][x + 1 + 1](o));
                simd4f temp1(hist[y + 1 + 1][x + 1 + 1](o + 1));
                simd4f temp2(hist[y + 1 + 1][x + 1 + 1](o + 2));
                simd4f h0 = min(temp0, nn) * n;
                simd4f h1 = min(temp1, nn) * n;
                simd4f h2 = min(temp2, nn) * n;
                set_hog(hog, o, xx, yy, sum(h0));
                set_hog(hog, o + 1, xx, yy, sum(h1));
                set_hog(hog, o + 2, xx, yy, sum(h2));
                t += h0 + h1 + h2;
            }
            t *= 2 * 0.2357;
            for (int o = 0; o < 9; o += 3) {
                simd4f temp0 = hist[y + 1 + 1][x + 1 + 1](o) + hist[y + 1 + 1][x + 1 + 1](o + 9);
                simd4f temp1 = hist[y + 1 + 1][x + 1 + 1](o + 1) + hist[y + 1 + 1][x + 1 + 1](o + 9 + 1);
                simd4f temp2 = hist[y + 1 + 1][x + 1 + 1](o + 2) + hist[y + 1 + 1][x + 1 + 1](o + 9 + 2);
                simd4f h0 = min(temp0, nn) * n;
                simd4f h1 = min(temp1, nn) * n;
                simd4f h2 = min(temp2, nn) * n;
                set_hog(hog, o + 18, xx, yy, sum(h0));
                set_hog(hog, o + 18 + 1, xx, yy, sum(h1));
                set_hog(hog, o + 18 + 2, xx, yy, sum(h2));
            }
            float temp[4];
            t.store(temp);
            set_hog(hog, 27, xx, yy, temp[0]);
            set_hog(hog, 28, xx, yy, temp[1]);
            set_hog(hog, 29, xx, yy, temp[2]);
            set_hog(hog, 30, xx, yy, temp[3]);
        }
    }
}

// The same grey buffer as a type dlib's features are not specialised for: dlib's own computation, for the comparison.
struct gray_view_reference : gray_view {};
}  // namespace deid

namespace dlib {
template <> struct image_traits<deid::gray_view_reference> { typedef unsigned char pixel_type; };

namespace impl_fhog {
// The detector's two image types: the caller's frame (level 0) and dlib's pyramid levels below it.
template <>
void impl_extract_fhog_features<deid::gray_view, dlib::array<dlib::array2d<float>>>(
    const deid::gray_view& img, dlib::array<dlib::array2d<float>>& hog, int cell_size, int filter_rows_padding, int filter_cols_padding) {
    if (cell_size == 1) { impl_extract_fhog_features_cell_size_1(img, hog, filter_rows_padding, filter_cols_padding); return; }
    deid::fhog_by_table(img, hog, cell_size, filter_rows_padding, filter_cols_padding);
}
template <>
void impl_extract_fhog_features<dlib::array2d<unsigned char>, dlib::array<dlib::array2d<float>>>(
    const dlib::array2d<unsigned char>& img, dlib::array<dlib::array2d<float>>& hog, int cell_size, int filter_rows_padding, int filter_cols_padding) {
    if (cell_size == 1) { impl_extract_fhog_features_cell_size_1(img, hog, filter_rows_padding, filter_cols_padding); return; }
    deid::fhog_by_table(img, hog, cell_size, filter_rows_padding, filter_cols_padding);
}
}  // namespace impl_fhog
}  // namespace dlib

// ---- dlib's separable filter, skipping rows of zeros ----
// The detector's filter bank runs dlib's float_spatially_filter_image_separable once per separable term of every
// plane of every pyramid level: most of its time. Its HOG planes have rows that are all zero: the filter padding dlib
// adds round each plane, and the black margin the finder adds round the frame. A row filter over zeros gives +0
// (dlib's sums start from +0, and +0 plus any product of +0 is +0), so those rows of the scratch image are set to +0
// rather than filtered; everything else is dlib's arithmetic in its order, so the saliency images are dlib's bit for
// bit (the detector tests compare detections; deid_filter_mismatches compares the images).
namespace deid {
template <typename image_type>
bool row_is_zero(const image_type& img, long r) {
    // Most rows have a value within their first few: stop at the first block of eight that is not all +0.
    const float* p = &img[r][0];
    const long nc = img.nc();
    long c = 0;
    for (; c + 8 <= nc; c += 8) {
        uint32_t b[8];
        std::memcpy(b, p + c, sizeof b);
        if ((b[0] | b[1] | b[2] | b[3] | b[4] | b[5] | b[6] | b[7]) != 0) return false;
    }
    for (; c < nc; ++c) { uint32_t b; std::memcpy(&b, p + c, 4); if (b != 0) return false; }
    return true;
}
}  // namespace deid

namespace dlib {
template <>
rectangle float_spatially_filter_image_separable<array2d<float>, array2d<float>, matrix<float, 0, 1>, matrix<float, 0, 1>>(
    const array2d<float>& in_img_, array2d<float>& out_img_, const matrix_exp<matrix<float, 0, 1>>& _row_filter,
    const matrix_exp<matrix<float, 0, 1>>& _col_filter, array2d<float>& scratch_, bool add_to) {
    const_temp_matrix<matrix<float, 0, 1>> row_filter(_row_filter);
    const_temp_matrix<matrix<float, 0, 1>> col_filter(_col_filter);
    const_image_view<array2d<float>> in_img(in_img_);
    image_view<array2d<float>> out_img(out_img_);
    if (in_img.size() == 0) { out_img.clear(); return rectangle(); }
    out_img.set_size(in_img.nr(), in_img.nc());
    const long first_row = col_filter.size() / 2;
    const long first_col = row_filter.size() / 2;
    const long last_row = in_img.nr() - ((col_filter.size() - 1) / 2);
    const long last_col = in_img.nc() - ((row_filter.size() - 1) / 2);
    const rectangle non_border = rectangle(first_col, first_row, last_col - 1, last_row - 1);
    if (!add_to) zero_border_pixels(out_img, non_border);
    image_view<array2d<float>> scratch(scratch_);
    scratch.set_size(in_img.nr(), in_img.nc());

    for (long r = 0; r < in_img.nr(); ++r) {
        if (deid::row_is_zero(in_img_, r)) {
            if (last_col > first_col) std::memset(&scratch[r][first_col], 0, sizeof(float) * (size_t)(last_col - first_col));
            continue;
        }
        long c = first_col;
        for (; c < last_col - 7; c += 8) {
            simd8f p, p2, p3, temp = 0, temp2 = 0, temp3 = 0;
            long n = 0;
            for (; n < row_filter.size() - 2; n += 3) {
                p.load(&in_img[r][c - first_col + n]);
                p2.load(&in_img[r][c - first_col + n + 1]);
                p3.load(&in_img[r][c - first_col + n + 2]);
                temp += p * row_filter(n);
                temp2 += p2 * row_filter(n + 1);
                temp3 += p3 * row_filter(n + 2);
            }
            for (; n < row_filter.size(); ++n) {
                p.load(&in_img[r][c - first_col + n]);
                temp += p * row_filter(n);
            }
            temp += temp2 + temp3;
            temp.store(&scratch[r][c]);
        }
        for (; c < last_col; ++c) {
            float p;
            float temp = 0;
            for (long n = 0; n < row_filter.size(); ++n) {
                p = in_img[r][c - first_col + n];
                temp += p * row_filter(n);
            }
            scratch[r][c] = temp;
        }
    }

    for (long r = first_row; r < last_row; ++r) {
        long c = first_col;
        for (; c < last_col - 7; c += 8) {
            simd8f p, p2, p3, temp = 0, temp2 = 0, temp3 = 0;
            long m = 0;
            for (; m < col_filter.size() - 2; m += 3) {
                p.load(&scratch[r - first_row + m][c]);
                p2.load(&scratch[r - first_row + m + 1][c]);
                p3.load(&scratch[r - first_row + m + 2][c]);
                temp += p * col_filter(m);
                temp2 += p2 * col_filter(m + 1);
                temp3 += p3 * col_filter(m + 2);
            }
            for (; m < col_filter.size(); ++m) {
                p.load(&scratch[r - first_row + m][c]);
                temp += p * col_filter(m);
            }
            temp += temp2 + temp3;
            if (add_to == false) {
                temp.store(&out_img[r][c]);
            } else {
                p.load(&out_img[r][c]);
                temp += p;
                temp.store(&out_img[r][c]);
            }
        }
        for (; c < last_col; ++c) {
            float temp = 0;
            for (long m = 0; m < col_filter.size(); ++m) temp += scratch[r - first_row + m][c] * col_filter(m);
            if (add_to == false) out_img[r][c] = temp;
            else out_img[r][c] += temp;
        }
    }
    return non_border;
}
}  // namespace dlib

namespace deid {
// dlib's serialization primitives read from a file in memory, as serialize.h writes them: an integer is a control
// byte (bit 7: negative, for signed types; low 4 bits: byte count) and that many bytes little-endian; a float is a
// float_details, mantissa (int64) and exponent (int16), made back into a float as dlib does. Parsing the model this
// way takes a small part of the time dlib's istream-based deserialize takes over its 16 million floats.
class memory_reader {
public:
    // A file in dlib's older text format for floats: the stream_reader, which dlib's own code backs, reads those.
    struct old_format : dlib::serialization_error { old_format() : dlib::serialization_error("old float format") {} };

    memory_reader(const unsigned char* data, size_t size) : p_(data), end_(data + size) {}

    template <typename T>
    T integer() {
        static_assert(std::is_integral<T>::value && sizeof(T) <= 8, "dlib packs integers of up to 8 bytes");
        if (p_ == end_) truncated();
        const unsigned char control = *p_++;
        const bool negative = std::is_signed<T>::value && (control & 0x80);
        const unsigned size = std::is_signed<T>::value ? (control & 0x0F) : (control & 0x8F);
        if (size == 0 || size > sizeof(T)) throw dlib::serialization_error("Error deserializing an integer");
        if ((size_t)(end_ - p_) < size) truncated();
        uint64_t v = 0;
        for (unsigned i = size; i-- > 0;) v = (v << 8) | p_[i];
        p_ += size;
        T item = (T)v;
        return negative ? (T)(item * (T)-1) : item;
    }

    float real() {
        // Away from the end, the mantissa's bytes are read as one 8-byte word and masked: the same value as
        // integer<int64_t>() and integer<int16_t>() give, without a loop and a bound check per byte (the 16 million
        // floats of the 68-point model were most of its load time).
        if ((size_t)(end_ - p_) >= 16) {
            const unsigned char control = p_[0];
            if ((control & 0x70) != 0) throw old_format();
            const unsigned size = control & 0x0F;
            if (size == 0 || size > 8) throw dlib::serialization_error("Error deserializing an integer");
            uint64_t v;
            std::memcpy(&v, p_ + 1, sizeof v);  // little-endian, as dlib writes integers
            if (size < 8) v &= (uint64_t(1) << (8 * size)) - 1;
            const int64_t item = (int64_t)v;
            const int64_t mantissa = (control & 0x80) ? (int64_t)(item * (int64_t)-1) : item;
            const unsigned char* q = p_ + 1 + size;
            const unsigned char econtrol = q[0];
            const unsigned esize = econtrol & 0x0F;
            if (esize == 0 || esize > 2) throw dlib::serialization_error("Error deserializing an integer");
            const auto eitem = (int16_t)(esize == 1 ? q[1] : (q[1] | (q[2] << 8)));
            const int16_t exponent = (econtrol & 0x80) ? (int16_t)(eitem * (int16_t)-1) : eitem;
            p_ = q + 1 + esize;
            return compose(mantissa, exponent);
        }
        if (p_ == end_) truncated();
        if ((*p_ & 0x70) != 0) throw old_format();
        const auto mantissa = integer<int64_t>();
        const auto exponent = integer<int16_t>();
        return compose(mantissa, exponent);
    }

private:
    static float compose(int64_t mantissa, int16_t exponent) {
        if (exponent >= -126 && exponent <= 127) {
            // A product with an exact power of two rounds once, as ldexp does: the same float, without a libm call.
            const uint32_t bits = (uint32_t)(exponent + 127) << 23;
            float scale;
            std::memcpy(&scale, &bits, sizeof scale);
            return (float)mantissa * scale;
        }
        if (exponent < dlib::float_details::is_inf) return std::ldexp((float)mantissa, exponent);
        if (exponent == dlib::float_details::is_inf) return std::numeric_limits<float>::infinity();
        if (exponent == dlib::float_details::is_ninf) return -std::numeric_limits<float>::infinity();
        return std::numeric_limits<float>::quiet_NaN();
    }

    [[noreturn]] static void truncated() { throw dlib::serialization_error("the file ends too early"); }
    const unsigned char* p_;
    const unsigned char* end_;
};

// The same primitives through dlib's own deserialize on a stream: every format dlib reads, at dlib's pace.
class stream_reader {
public:
    explicit stream_reader(std::istream& in) : in_(in) {}
    template <typename T> T integer() { T v; dlib::deserialize(v, in_); return v; }
    float real() { float v; dlib::deserialize(v, in_); return v; }
private:
    std::istream& in_;
};

// dlib's shape_predictor (a cascade of regression-tree forests, Kazemi & Sullivan 2014) read from dlib's own model
// file and evaluated exactly as dlib does, with the same float operations in the same order, so it returns dlib's
// landmarks bit for bit. What differs is where the trees live. dlib keeps each tree's nodes and every leaf (136
// floats for 68 points) in separate heap blocks, and evaluates tree after tree. Finding a leaf and adding it then
// wait on one cache miss after another: at 7500 trees a face, that was most of the predictor's time. Here each
// cascade's nodes and leaves lie in two flat arrays. Within a cascade every tree reads the same sampled pixels, so
// all its leaves are found first, then summed in tree order with the next ones prefetched.
class flat_shape_predictor {
public:
    // Reads dlib's serialization of a shape_predictor (version 1) through a reader of its primitives
    // (memory_reader or stream_reader above).
    template <typename reader>
    flat_shape_predictor(reader& in, size_t file_bytes) {
        const size_t floats_at_most = file_bytes / 2;
        const int version = in.template integer<int>();
        if (version != 1) throw dlib::serialization_error("unexpected dlib::shape_predictor version " + std::to_string(version));
        const long dims = column(in, initial_shape_);
        if (dims <= 0 || dims % 2 != 0) throw dlib::serialization_error("bad initial shape");
        // forests: std::vector<std::vector<impl::regression_tree>>, read tree by tree into the flat layout.
        const unsigned long num_cascades = count(in, 1000, "cascades");
        cascades_.resize(num_cascades);
        // Leaves go straight into one block: no float takes less than 2 bytes of the file (4 in the binary format, "0 " in
        // the old text one), which bounds their count; the pages past the last leaf are given back below.
        arena_ = huge_block(floats_at_most);
        size_t used = 0;
        std::vector<size_t> first(num_cascades);  // each cascade's first leaf float in the block
        std::vector<unsigned long> max_pixel(num_cascades, 0);  // the highest pixel index a split reads, per cascade
        for (unsigned long ci = 0; ci < num_cascades; ++ci) {
            auto& c = cascades_[ci];
            first[ci] = used;
            const unsigned long num_trees = count(in, 100000, "trees");
            c.trees.reserve(num_trees);
            for (unsigned long t = 0; t < num_trees; ++t) {
                // regression_tree: splits (idx1, idx2, thresh each), then leaf_values.
                const unsigned long n = count(in, 1u << 20, "splits");
                c.trees.push_back({(uint32_t)c.splits.size(), (uint32_t)n, (used - first[ci]) / (size_t)dims});
                for (unsigned long k = 0; k < n; ++k) {
                    const auto idx1 = in.template integer<unsigned long>(), idx2 = in.template integer<unsigned long>();
                    const float thresh = in.real();
                    max_pixel[ci] = std::max({max_pixel[ci], idx1, idx2});
                    c.splits.push_back({(uint32_t)std::min(idx1, 0xffffffffUL), (uint32_t)std::min(idx2, 0xffffffffUL), thresh});
                }
                // A full tree (what dlib's trainer writes and its evaluation assumes): every path ends in a leaf.
                if (count(in, 1u << 21, "leaves") != n + 1 || ((n + 1) & n) != 0)
                    throw dlib::serialization_error("a regression tree is not full");
                for (unsigned long k = 0; k <= n; ++k) {
                    if (column_length(in) != dims) throw dlib::serialization_error("a leaf does not match the shape");
                    if (used + dims > floats_at_most) throw dlib::serialization_error("more leaves than the file can hold");
                    for (long r = 0; r < dims; ++r) arena_.data[used++] = in.real();
                }
            }
            c.splits.shrink_to_fit();
        }
        // anchor_idx: std::vector<std::vector<unsigned long>>, then deltas: std::vector<std::vector<vector<float,2>>>.
        if (count(in, num_cascades, "anchor lists") != num_cascades) throw dlib::serialization_error("cascade counts disagree");
        for (auto& c : cascades_) {
            c.anchor_idx.resize(count(in, 1u << 20, "anchors"));
            for (auto& a : c.anchor_idx)
                if ((a = in.template integer<unsigned long>()) >= (unsigned long)(dims / 2))
                    throw dlib::serialization_error("a pixel anchor is out of range");
        }
        if (count(in, num_cascades, "delta lists") != num_cascades) throw dlib::serialization_error("cascade counts disagree");
        for (unsigned long ci = 0; ci < num_cascades; ++ci) {
            auto& c = cascades_[ci];
            c.deltas.resize(count(in, 1u << 20, "deltas"));
            for (auto& d : c.deltas) { d.x() = in.real(); d.y() = in.real(); }
            if (c.anchor_idx.size() != c.deltas.size()) throw dlib::serialization_error("pixel counts disagree");
            // Every split reads two of the cascade's sampled pixels: out of range would read past them.
            if (!c.splits.empty() && max_pixel[ci] >= c.deltas.size())
                throw dlib::serialization_error("a split reads a pixel that is not sampled");
        }
        for (unsigned long ci = 0; ci < num_cascades; ++ci) cascades_[ci].leaves = arena_.data + first[ci];
        arena_.trim(used);
    }

    unsigned long num_parts() const { return initial_shape_.size() / 2; }

    // dlib::shape_predictor::operator()(img, rect), the parts only.
    template <typename image_type>
    void predict(const image_type& img, const dlib::rectangle& rect, std::vector<dlib::point>& parts) const {
        using namespace dlib::impl;
        dlib::matrix<float, 0, 1> current_shape = initial_shape_;
        const long dims = current_shape.size();
        std::vector<float> pixels;
        std::vector<const float*> chosen;
        for (const auto& c : cascades_) {
            extract_feature_pixel_values(img, rect, current_shape, initial_shape_, c.anchor_idx, c.deltas, pixels);
            chosen.resize(c.trees.size());
            for (size_t t = 0; t < c.trees.size(); ++t) {
                const auto& tr = c.trees[t];
                const split* s = c.splits.data() + tr.first_split;
                uint32_t i = 0;
                while (i < tr.num_splits)
                    i = (pixels[s[i].idx1] - pixels[s[i].idx2] > s[i].thresh) ? 2 * i + 1 : 2 * i + 2;
                chosen[t] = c.leaves + (tr.first_leaf + (i - tr.num_splits)) * (size_t)dims;
            }
            float* shape = &current_shape(0);
            constexpr size_t ahead = 8;  // leaves ahead, fetched into L2 (more of them can be in flight there than into L1)
            for (size_t t = 0; t < chosen.size(); ++t) {
                if (t + ahead < chosen.size()) {
                    const char* next = reinterpret_cast<const char*>(chosen[t + ahead]);
                    for (long b = 0; b < dims * (long)sizeof(float); b += 64) __builtin_prefetch(next + b, 0, 2);
                }
                const float* leaf = chosen[t];
                for (long k = 0; k < dims; ++k) shape[k] += leaf[k];
            }
        }
        const dlib::point_transform_affine tform_to_img = unnormalizing_tform(rect);
        parts.resize(num_parts());
        for (unsigned long i = 0; i < parts.size(); ++i) parts[i] = tform_to_img(location(current_shape, i));
    }

private:
    // A std::vector's length, bounded so a damaged file fails here instead of asking for any amount of memory.
    template <typename reader>
    static unsigned long count(reader& in, unsigned long most, const char* what) {
        const auto n = in.template integer<unsigned long>();
        if (n > most) throw dlib::serialization_error(std::string("implausible number of ") + what);
        return n;
    }

    // A dlib::matrix<float,0,1> (rows and columns negated in dlib's newer format): its length.
    template <typename reader>
    static long column(reader& in, dlib::matrix<float, 0, 1>& m) {
        const long nr = column_length(in);
        if (nr < 0 || nr > (1 << 20)) throw dlib::serialization_error("a shape vector has the wrong size");
        m.set_size(nr);
        for (long r = 0; r < nr; ++r) m(r) = in.real();
        return nr;
    }

    // The length of a dlib::matrix<float,0,1> (a shape or a leaf) whose floats follow; -1 if it is not a column.
    template <typename reader>
    static long column_length(reader& in) {
        long nr = in.template integer<long>(), nc = in.template integer<long>();
        if (nr < 0 || nc < 0) { nr = -nr; nc = -nc; }
        return nc == 1 ? nr : -1;
    }

    struct split { uint32_t idx1, idx2; float thresh; };
    struct tree_ref { uint32_t first_split, num_splits; size_t first_leaf; };
    struct cascade {
        std::vector<split> splits;     // every tree's nodes, tree after tree, breadth first as dlib stores them
        std::vector<tree_ref> trees;
        const float* leaves = nullptr; // every tree's leaves, dims floats each (in arena_)
        std::vector<unsigned long> anchor_idx;
        std::vector<dlib::vector<float, 2>> deltas;
    };
    // Floats in a block of whole 2 MB pages, advised to the kernel as huge-page memory.
    struct huge_block {
        static constexpr size_t page = 2u << 20;
        float* data = nullptr;
        size_t bytes = 0;
        // Whole pages for this many floats, at least one.
        static size_t pages_for(size_t floats) { return std::max<size_t>(page, (floats * sizeof(float) + page - 1) / page * page); }
        huge_block() = default;
        explicit huge_block(size_t floats) {
            bytes = pages_for(floats);
            // mmap aligns to 4 KB only: map one page more and give back the unaligned ends.
            void* raw = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (raw == MAP_FAILED) throw std::bad_alloc();
            auto start = reinterpret_cast<uintptr_t>(raw), aligned = (start + page - 1) / page * page;
            if (aligned > start) munmap(raw, aligned - start);
            if (aligned + bytes < start + bytes + page) munmap(reinterpret_cast<void*>(aligned + bytes), start + page - aligned);
            data = reinterpret_cast<float*>(aligned);
            madvise(data, bytes, MADV_HUGEPAGE);  // advice only: without it the block still works with small pages
        }
        // Gives back the whole pages past the first `floats`.
        void trim(size_t floats) {
            const size_t keep = pages_for(floats);
            if (keep < bytes) { munmap(reinterpret_cast<char*>(data) + keep, bytes - keep); bytes = keep; }
        }
        huge_block(const huge_block&) = delete;
        huge_block& operator=(huge_block&& o) noexcept { std::swap(data, o.data); std::swap(bytes, o.bytes); return *this; }
        ~huge_block() { if (data) munmap(data, bytes); }
    };
    dlib::matrix<float, 0, 1> initial_shape_;
    std::vector<cascade> cascades_;
    huge_block arena_;
};

// A loaded predictor: the flat one, or (for the parity test) dlib's own.
struct predictor {
    std::unique_ptr<flat_shape_predictor> flat;
    std::unique_ptr<dlib::shape_predictor> reference;
};
}  // namespace deid

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

// dlib's built-in frontal face detector as get_frontal_face_detector() would decode it from its compressed string
// (most of a second of CPU per call), serialized at build time by frontal_face_detector_dump.cpp and embedded here.
extern "C" const unsigned char deid_frontal_face_detector[], deid_frontal_face_detector_end[];
asm(".section .rodata\n"
    ".balign 16\n"
    ".globl deid_frontal_face_detector\n.hidden deid_frontal_face_detector\n"
    ".globl deid_frontal_face_detector_end\n.hidden deid_frontal_face_detector_end\n"
    "deid_frontal_face_detector:\n"
    ".incbin \"" DEID_DETECTOR_FILE "\"\n"
    "deid_frontal_face_detector_end:\n"
    ".previous\n");

namespace {
// dlib's face detector, read once per process from the copy embedded in the shim; callers copy it (a detector keeps
// per-image state while it scans).
const dlib::frontal_face_detector& frontal_prototype() {
    static const dlib::frontal_face_detector prototype = [] {
        std::istringstream in(std::string(reinterpret_cast<const char*>(deid_frontal_face_detector),
                                          (size_t)(deid_frontal_face_detector_end - deid_frontal_face_detector)));
        dlib::frontal_face_detector d;
        dlib::deserialize(d, in);
        return d;
    }();
    return prototype;
}
}  // namespace

namespace {
// dlib's face detector, and copies of it that scan fewer pyramid levels, made on first use: the same weights and
// filter bank (rebuilt from them as deserialization does), a scanner configured to stop after max_levels levels.
struct detector {
    dlib::frontal_face_detector all;
    std::map<int, dlib::frontal_face_detector> limited;

    dlib::frontal_face_detector& with_levels(int max_levels) {
        if (max_levels <= 0) return all;
        auto it = limited.find(max_levels);
        if (it != limited.end()) return it->second;
        dlib::frontal_face_detector::image_scanner_type scanner;  // not copyable: configured as the original
        scanner.copy_configuration(all.get_scanner());
        scanner.set_max_pyramid_levels((unsigned long)max_levels);
        std::vector<dlib::frontal_face_detector::feature_vector_type> w;
        for (unsigned long i = 0; i < all.num_detectors(); ++i) w.push_back(all.get_w(i));
        return limited.emplace(max_levels, dlib::frontal_face_detector(scanner, all.get_overlap_tester(), w)).first->second;
    }
};
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

// How many HOG feature values (all 31 planes, padding included) the table-driven features compute differently from
// dlib's own on this 8-bit grey image, with the detector's cell size and this filter padding: read in place as the
// detector reads its first pyramid level, or (as_copy) from a dlib image as it holds the levels below; -1 on error.
// A plane of another size counts all its values. The tests hold it to 0.
DEID_API long deid_fhog_mismatches(const unsigned char* data, int width, int height, int stride, int as_copy, int padding) {
    try {
        dlib::array<dlib::array2d<float>> ours, theirs;
        if (as_copy) {
            dlib::array2d<unsigned char> img(height, width);
            for (int r = 0; r < height; ++r) std::memcpy(&img[r][0], data + (size_t)r * stride, (size_t)width);
            dlib::extract_fhog_features(img, ours, 8, padding, padding);
        } else {
            dlib::extract_fhog_features(deid::gray_view{data, height, width, stride}, ours, 8, padding, padding);
        }
        deid::gray_view_reference reference;
        reference.data = data; reference.rows = height; reference.cols = width; reference.stride = stride;
        dlib::extract_fhog_features(reference, theirs, 8, padding, padding);
        long differ = 0;
        for (size_t i = 0; i < std::max(ours.size(), theirs.size()); ++i) {
            if (i >= ours.size() || i >= theirs.size() || ours[i].nr() != theirs[i].nr() || ours[i].nc() != theirs[i].nc()) {
                differ += (i < ours.size() ? ours[i].size() : 0) + (i < theirs.size() ? theirs[i].size() : 0);
                continue;
            }
            for (long r = 0; r < ours[i].nr(); ++r)
                for (long c = 0; c < ours[i].nc(); ++c)
                    differ += std::memcmp(&ours[i][r][c], &theirs[i][r][c], sizeof(float)) != 0;
        }
        return differ;
    } catch (const std::exception& e) { return fail(e); }
}

DEID_API void* deid_detector_new() {
    try {
        return new detector{frontal_prototype(), {}};
    }
    catch (const std::exception& e) { fail(e); return nullptr; }
}

// How many saliency values the shim's separable filter (the one with zero rows skipped) computes differently from
// dlib's own, over every filter bank of the face detector applied to this 8-bit grey image's HOG planes as its first
// pyramid level has them; -1 on error. The tests hold it to 0.
DEID_API long deid_filter_mismatches(const unsigned char* data, int width, int height, int stride) {
    try {
        const auto& det = frontal_prototype();
        const auto& scanner = det.get_scanner();
        dlib::array<dlib::array2d<float>> feats;
        dlib::extract_fhog_features(deid::gray_view{data, height, width, stride}, feats, (int)scanner.get_cell_size(),
                                    (int)scanner.get_fhog_window_height(), (int)scanner.get_fhog_window_width());
        long differ = 0;
        for (unsigned long d = 0; d < det.num_detectors(); ++d) {
            const auto fb = scanner.build_fhog_filterbank(det.get_w(d));
            dlib::array2d<float> ours, theirs, scratch;
            bool first = true;
            for (size_t i = 0; i < fb.row_filters.size(); ++i)
                for (size_t j = 0; j < fb.row_filters[i].size(); ++j) {
                    const auto& row = fb.row_filters[i][j];
                    const auto& col = fb.col_filters[i][j];
                    dlib::float_spatially_filter_image_separable(feats[i], ours, row, col, scratch, !first);
                    // The same filters as matrix expressions: dlib's own template, not the specialisation.
                    dlib::float_spatially_filter_image_separable(feats[i], theirs, dlib::rowm(row, dlib::range(0, row.size() - 1)),
                                                                 dlib::rowm(col, dlib::range(0, col.size() - 1)), scratch, !first);
                    first = false;
                }
            if (ours.nr() != theirs.nr() || ours.nc() != theirs.nc()) { differ += ours.size() + theirs.size(); continue; }
            for (long r = 0; r < ours.nr(); ++r)
                for (long c = 0; c < ours.nc(); ++c) differ += std::memcmp(&ours[r][c], &theirs[r][c], sizeof(float)) != 0;
        }
        return differ;
    } catch (const std::exception& e) { return fail(e); }
}

DEID_API void deid_detector_free(void* d) { delete static_cast<detector*>(d); }

// Writes up to max_faces detections as (left, top, right, bottom, score) doubles; returns the count or -1.
// max_levels > 0 scans only that many pyramid levels (faces from the window's 80 px up to 80·1.2^(max_levels−1) px).
DEID_API int deid_detect(void* d, const unsigned char* data, int width, int height, int stride, int channels,
                int upsample, double adjust_threshold, int max_levels, double* out, int max_faces) {
    try {
        auto& det = static_cast<detector*>(d)->with_levels(max_levels);
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

// The file mapped and parsed in memory; a model with floats in dlib's older text format through dlib's stream code.
static std::unique_ptr<deid::flat_shape_predictor> load_flat(const char* path) {
    struct mapping {
        void* data = MAP_FAILED;
        size_t size = 0;
        ~mapping() { if (data != MAP_FAILED) munmap(data, size); }
    } file;
    {
        const int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw dlib::serialization_error(std::string("Unable to open ") + path + " for reading.");
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_size > 0) {
            file.size = (size_t)st.st_size;
            file.data = mmap(nullptr, file.size, PROT_READ, MAP_PRIVATE, fd, 0);
        }
        close(fd);
        if (file.data == MAP_FAILED) throw dlib::serialization_error(std::string("Unable to read ") + path);
    }
    madvise(file.data, file.size, MADV_SEQUENTIAL);
    try {
        deid::memory_reader in(static_cast<const unsigned char*>(file.data), file.size);
        return std::make_unique<deid::flat_shape_predictor>(in, file.size);
    } catch (const deid::memory_reader::old_format&) {
        std::ifstream stream(path, std::ios::binary);
        deid::stream_reader in(stream);
        return std::make_unique<deid::flat_shape_predictor>(in, file.size);
    }
}

// reference != 0 loads dlib's own shape_predictor instead (the parity test compares the two).
DEID_API void* deid_predictor_load(const char* path, int reference) {
    try {
        auto p = std::make_unique<deid::predictor>();
        if (reference) {
            p->reference = std::make_unique<dlib::shape_predictor>();
            dlib::deserialize(path) >> *p->reference;
        } else {
            p->flat = load_flat(path);
        }
        return p.release();
    } catch (const std::exception& e) { fail(e); return nullptr; }
}

DEID_API void deid_predictor_free(void* predictor) { delete static_cast<deid::predictor*>(predictor); }

// The predictor is immutable after loading, so concurrent calls on one instance are safe.
// Box is (left, top, right, bottom) in pixels; writes num_parts (x, y) float pairs; returns num_parts or -1.
DEID_API int deid_predict(void* predictor, const unsigned char* data, int width, int height, int stride, int channels,
                 double left, double top, double right, double bottom, float* out_xy, int max_parts) {
    try {
        auto& p = *static_cast<deid::predictor*>(predictor);
        dlib::rectangle rect((long)std::lround(left), (long)std::lround(top),
                             (long)std::lround(right) - 1, (long)std::lround(bottom) - 1);
        std::vector<dlib::point> parts;
        auto run = [&](const auto& img) {
            if (p.flat) { p.flat->predict(img, rect, parts); return; }
            auto shape = (*p.reference)(img, rect);
            parts.resize(shape.num_parts());
            for (unsigned long i = 0; i < shape.num_parts(); ++i) parts[i] = shape.part(i);
        };
        if (channels == 1) {
            run(gray_view{data, height, width, stride});
        } else {
            dlib::array2d<unsigned char> img;
            to_gray(data, width, height, stride, channels, img);
            run(img);
        }
        int n = (int)std::min<size_t>(parts.size(), (size_t)max_parts);
        for (int i = 0; i < n; ++i) {
            out_xy[i * 2 + 0] = (float)parts[i].x();
            out_xy[i * 2 + 1] = (float)parts[i].y();
        }
        return n;
    } catch (const std::exception& e) { return fail(e); }
}

}  // extern "C"
