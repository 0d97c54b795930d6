using System.Collections.Concurrent;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using OpenCvSharp;

namespace Deid.Faces;

public enum BlendMode
{
    /// <summary>Alpha blend under the feathered head mask.</summary>
    Feather,
    /// <summary>Match the new crop's Lab mean/std to the original crop inside the mask, then feather.</summary>
    ColorMatch,
    /// <summary>Poisson (seamless) cloning of the head region.</summary>
    Poisson,
}

/// <summary>Puts a (modified) aligned crop back into the frame it was taken from.</summary>
public static class FacePaster
{
    private static readonly ConcurrentDictionary<int, Mat> HeadMasks = new();
    private static readonly ConcurrentDictionary<int, Rect> HeadMaskBounds = new();

    /// <summary>
    /// Warps <paramref name="newCrop"/> back through face.CropToFrame and blends it under a feathered head mask.
    /// Only the part of face.FrameRegion under the mask's non-zero pixels is read or written: the crop's corners
    /// carry zero weight, and warping and blending them was most of paste's cost.
    /// </summary>
    /// <param name="buffer">Where the warped crop is drawn; one reused across frames spares a fresh allocation (and its
    /// page faults) per face. Null: a temporary one.</param>
    /// <param name="smooth">The new crop has no detail finer than a few of its pixels (a blur): where it is enlarged
    /// 2k× or more per side, it is warped at 1/k of the region's resolution and enlarged k× by OpenCV's linear resize,
    /// several times cheaper per pixel than the warp, for linear steps between samples that carry no detail.</param>
    public static void Paste(Mat frame, AlignedFace face, Mat newCrop, BlendMode mode = BlendMode.ColorMatch, PasteBuffer? buffer = null, bool smooth = false)
    {
        ArgumentNullException.ThrowIfNull(frame);
        ArgumentNullException.ThrowIfNull(face);
        ArgumentNullException.ThrowIfNull(newCrop);
        if (frame.Type() != MatType.CV_8UC3) throw new ArgumentException($"paste needs a BGR 8-bit frame, got {frame.Type()}", nameof(frame));
        if (newCrop.Type() != MatType.CV_8UC3 || newCrop.Width != face.Size || newCrop.Height != face.Size)
            throw new ArgumentException($"the new crop must be a {face.Size}x{face.Size} BGR 8-bit image, got {newCrop.Width}x{newCrop.Height} {newCrop.Type()}", nameof(newCrop));
        var mask = HeadMask(face.Size);
        var region = MaskRegion(face) & face.FrameRegion & new Rect(0, 0, frame.Width, frame.Height);
        if (region.Width <= 0 || region.Height <= 0) return;

        using var colored = mode == BlendMode.Feather ? null : MatchColors(newCrop, face.Crop, mask);
        var source = colored ?? newCrop;

        // region pixel r → crop pixel: A (r + tl) + b.
        using var m = face.FrameToCrop.Clone();
        m.Set(0, 2, m.At<double>(0, 2) + m.At<double>(0, 0) * region.X + m.At<double>(0, 1) * region.Y);
        m.Set(1, 2, m.At<double>(1, 2) + m.At<double>(1, 0) * region.X + m.At<double>(1, 1) * region.Y);
        // One warp of crop and mask together (the mask as an 8-bit fourth channel): half the warps of warping them
        // apart, in OpenCV's fixed-point 8-bit path. A blurred or pixelated crop (Feather) has no detail a cubic
        // kernel would keep over a linear one.
        var interpolation = mode == BlendMode.Feather ? InterpolationFlags.Linear : InterpolationFlags.Cubic;
        using var bgra = new Mat();
        Cv2.CvtColor(source, bgra, ColorConversionCodes.BGR2BGRA);
        Cv2.InsertChannel(HeadMask8(face.Size), bgra, 3);
        using var own = buffer is null ? new PasteBuffer() : null;
        var area = buffer ?? own!;
        int k = smooth ? Math.Clamp((int)(CropScale(face) / 2), 1, 4) : 1;
        var coarse = new Size((region.Width + k - 1) / k, (region.Height + k - 1) / k);
        using var canvas = area.Region(new Size(coarse.Width * k, coarse.Height * k));
        using var warped = new Mat(canvas, new Rect(0, 0, region.Width, region.Height));
        // Transparent black beyond the crop: the mask is zero on the crop's border, so nothing there has weight
        // either way, and OpenCV's constant-border path is about a third cheaper than its replicating one.
        if (k == 1)
            Cv2.WarpAffine(bgra, warped, m, region.Size, InterpolationFlags.WarpInverseMap | interpolation, BorderTypes.Constant, Scalar.All(0));
        else
        {
            // Coarse pixel s covers region pixels k·s .. k·s + k − 1, centred at k·s + (k − 1)/2 (resize's own grid).
            using var mk = new Mat(2, 3, MatType.CV_64FC1);
            double c = (k - 1) / 2.0;
            for (var row = 0; row < 2; row++)
            {
                double a0 = m.At<double>(row, 0), a1 = m.At<double>(row, 1);
                mk.Set(row, 0, a0 * k);
                mk.Set(row, 1, a1 * k);
                mk.Set(row, 2, m.At<double>(row, 2) + (a0 + a1) * c);
            }
            using var small = area.Region(coarse, coarseArea: true);
            Cv2.WarpAffine(bgra, small, mk, coarse, InterpolationFlags.WarpInverseMap | interpolation, BorderTypes.Constant, Scalar.All(0));
            Cv2.Resize(small, canvas, canvas.Size(), 0, 0, InterpolationFlags.Linear);
        }

        using var dst = new Mat(frame, region);
        if (mode == BlendMode.Poisson && TryPoisson(warped, dst)) return;
        Blend(warped, dst);
    }

    /// <summary><see cref="HeadMask"/> as 8-bit weights (255 = 1), for the warp.</summary>
    private static Mat HeadMask8(int size) => HeadMasks8.GetOrAdd(size, static n =>
    {
        var m = new Mat();
        HeadMask(n).ConvertTo(m, MatType.CV_8UC1, 255.0);
        return m;
    });

    private static readonly ConcurrentDictionary<int, Mat> HeadMasks8 = new();

    /// <summary>The feathered head mask (CV_32F, 1 inside) for a crop size: face, hair and chin of an FFHQ crop.
    /// Cached and shared: do not modify or dispose it.</summary>
    public static Mat HeadMask(int size) => HeadMasks.GetOrAdd(size, static n =>
    {
        var mask = new Mat(n, n, MatType.CV_32FC1, Scalar.All(0));
        // An FFHQ crop holds the hair from about 5% below its top edge and the chin at about 92% of its height;
        // the ellipse spans both and leaves the background corners alone.
        var centre = new Point2f(n * 0.5f, n * 0.5f);
        Cv2.Ellipse(mask, new RotatedRect(centre, new Size2f(n * 0.76f, n * 0.90f), 0), Scalar.All(1), -1, LineTypes.AntiAlias);
        double sigma = n * 0.025;
        Cv2.GaussianBlur(mask, mask, new Size(0, 0), sigma);
        // The crop edge must carry zero weight or the warp's border would show.
        Cv2.Rectangle(mask, new Rect(0, 0, n, n), Scalar.All(0), 1);
        return mask;
    });

    /// <summary>Frame pixels the head mask's non-zero part can reach (its crop bounds through CropToFrame, rounded out).</summary>
    private static Rect MaskRegion(AlignedFace face)
    {
        var b = HeadMaskBounds.GetOrAdd(face.Size, n =>
        {
            using var nonZero = new Mat();
            Cv2.Compare(HeadMask(n), Scalar.All(0), nonZero, CmpTypes.GT);
            return Cv2.BoundingRect(nonZero);
        });
        // Crop pixel centres at integers: the bounds' corners reach half a pixel beyond the outermost centres.
        var corners = face.TransformToFrame(
        [
            new Point2f(b.Left - 0.5f, b.Top - 0.5f), new Point2f(b.Right - 0.5f, b.Top - 0.5f),
            new Point2f(b.Left - 0.5f, b.Bottom - 0.5f), new Point2f(b.Right - 0.5f, b.Bottom - 0.5f),
        ]);
        // Bilinear sampling of the mask reaches one crop pixel further; one frame pixel of margin per crop pixel scale covers it.
        int margin = 1 + (int)Math.Ceiling(CropScale(face));
        int x0 = (int)MathF.Floor(corners.Min(p => p.X)) - margin, y0 = (int)MathF.Floor(corners.Min(p => p.Y)) - margin;
        int x1 = (int)MathF.Ceiling(corners.Max(p => p.X)) + margin, y1 = (int)MathF.Ceiling(corners.Max(p => p.Y)) + margin;
        return new Rect(x0, y0, Math.Max(0, x1 - x0 + 1), Math.Max(0, y1 - y0 + 1));
    }

    /// <summary>Frame pixels per crop pixel (along a side).</summary>
    private static double CropScale(AlignedFace face) =>
        Math.Sqrt(Math.Abs(face.CropToFrame.At<double>(0, 0) * face.CropToFrame.At<double>(1, 1)
                           - face.CropToFrame.At<double>(0, 1) * face.CropToFrame.At<double>(1, 0)));

    /// <summary>
    /// dst = warped·α + dst·(1 − α), α the warped BGRA's fourth channel (8-bit), rounded to nearest. Eight pixels at a
    /// time where the CPU has AVX2, four where it has byte shuffles (SSSE3): a group all outside the head (α = 0) is
    /// skipped, one all inside (α = 255) copied, and one on the feathered rim (a third of a large face's groups)
    /// mixed in 16-bit lanes.
    /// </summary>
    internal static unsafe void Blend(Mat warped, Mat dst)
    {
        // Rows and Cols are calls into OpenCV: read once, not per pixel.
        int rows = dst.Rows, cols = dst.Cols;
        for (var y = 0; y < rows; y++)
        {
            byte* w = (byte*)warped.Ptr(y), d = (byte*)dst.Ptr(y);
            var x = 0;
            if (Avx2.IsSupported)
                for (; x + 8 <= cols; x += 8, w += 32, d += 24)
                    Blend8(w, d);
            if (Ssse3.IsSupported)
                for (; x + 4 <= cols; x += 4, w += 16, d += 12)
                    Blend4(w, d);
            for (; x < cols; x++, w += 4, d += 3)
            {
                int a = w[3];
                if (a == 0) continue;
                int b = 255 - a;
                d[0] = (byte)((w[0] * a + d[0] * b + 127) / 255);
                d[1] = (byte)((w[1] * a + d[1] * b + 127) / 255);
                d[2] = (byte)((w[2] * a + d[2] * b + 127) / 255);
            }
        }
    }

    /// <summary>Four BGRA pixels over four BGR ones; reads and writes exactly the 12 destination bytes.</summary>
    private static unsafe void Blend4(byte* w, byte* d)
    {
        var px = Vector128.Load(w);
        var alpha = px.AsUInt32() & Vector128.Create(0xFF000000u);
        if (alpha == Vector128<uint>.Zero) return;
        // BGRA ×4 → BGR ×4 in the low 12 bytes (0x80: zero).
        var toBgr = Vector128.Create((byte)0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 0x80, 0x80, 0x80, 0x80);
        Vector128<byte> result;
        if (alpha == Vector128.Create(0xFF000000u)) result = Ssse3.Shuffle(px, toBgr);
        else
        {
            var under = Load12(d);
            var toBgrx = Vector128.Create((byte)0, 1, 2, 0x80, 3, 4, 5, 0x80, 6, 7, 8, 0x80, 9, 10, 11, 0x80);
            var dx = Ssse3.Shuffle(under, toBgrx);
            var a = Ssse3.Shuffle(px, Vector128.Create((byte)3, 3, 3, 3, 7, 7, 7, 7, 11, 11, 11, 11, 15, 15, 15, 15));
            var lo = Mix(Vector128.WidenLower(px), Vector128.WidenLower(dx), Vector128.WidenLower(a));
            var hi = Mix(Vector128.WidenUpper(px), Vector128.WidenUpper(dx), Vector128.WidenUpper(a));
            result = Ssse3.Shuffle(Vector128.Narrow(lo, hi), toBgr);
        }
        Store12(d, result);
    }

    /// <summary>
    /// Four BGR pixels into the low 12 bytes. Never 16 bytes, read or written: the 4 past them may be frame pixels
    /// outside this region, or past the image's end.
    /// </summary>
    private static unsafe Vector128<byte> Load12(byte* d) => Vector128.Create(*(ulong*)d, *(uint*)(d + 8)).AsByte();

    /// <summary>The low 12 bytes of <paramref name="bgr"/> (four BGR pixels) to <paramref name="d"/>, nothing past them.</summary>
    private static unsafe void Store12(byte* d, Vector128<byte> bgr)
    {
        *(ulong*)d = bgr.AsUInt64().GetElement(0);
        *(uint*)(d + 8) = bgr.AsUInt32().GetElement(2);
    }

    /// <summary>
    /// Eight BGRA pixels over eight BGR ones, as <see cref="Blend4"/> does four (AVX2's byte shuffles work within each
    /// 16-byte half: the halves are pixels 0-3 and 4-7); reads and writes exactly the 24 destination bytes.
    /// </summary>
    private static unsafe void Blend8(byte* w, byte* d)
    {
        var px = Vector256.Load(w);
        var alpha = px.AsUInt32() & Vector256.Create(0xFF000000u);
        if (alpha == Vector256<uint>.Zero) return;
        var toBgr = Vector256.Create((byte)0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 0x80, 0x80, 0x80, 0x80,
            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 0x80, 0x80, 0x80, 0x80);
        Vector256<byte> result;
        if (alpha == Vector256.Create(0xFF000000u)) result = Avx2.Shuffle(px, toBgr);
        else
        {
            var under = Vector256.Create(Load12(d), Load12(d + 12));
            var toBgrx = Vector256.Create((byte)0, 1, 2, 0x80, 3, 4, 5, 0x80, 6, 7, 8, 0x80, 9, 10, 11, 0x80,
                0, 1, 2, 0x80, 3, 4, 5, 0x80, 6, 7, 8, 0x80, 9, 10, 11, 0x80);
            var dx = Avx2.Shuffle(under, toBgrx);
            var a = Avx2.Shuffle(px, Vector256.Create((byte)3, 3, 3, 3, 7, 7, 7, 7, 11, 11, 11, 11, 15, 15, 15, 15,
                3, 3, 3, 3, 7, 7, 7, 7, 11, 11, 11, 11, 15, 15, 15, 15));
            var lo = Mix(Vector256.WidenLower(px), Vector256.WidenLower(dx), Vector256.WidenLower(a));
            var hi = Mix(Vector256.WidenUpper(px), Vector256.WidenUpper(dx), Vector256.WidenUpper(a));
            result = Avx2.Shuffle(Vector256.Narrow(lo, hi), toBgr);
        }
        Store12(d, result.GetLower());
        Store12(d + 12, result.GetUpper());
    }

    /// <summary>The 16-bit mix of the 128-bit <see cref="Mix(Vector128{ushort}, Vector128{ushort}, Vector128{ushort})"/>, sixteen lanes at a time.</summary>
    private static Vector256<ushort> Mix(Vector256<ushort> w, Vector256<ushort> d, Vector256<ushort> a)
    {
        var x = w * a + d * (Vector256.Create((ushort)255) - a) + Vector256.Create((ushort)127);
        return (x + Vector256.Create((ushort)1) + (x >> 8)) >> 8;
    }

    /// <summary>(w·a + d·(255 − a) + 127) / 255 per 16-bit lane; x / 255 = (x + 1 + (x >> 8)) >> 8 for x below 65535.</summary>
    private static Vector128<ushort> Mix(Vector128<ushort> w, Vector128<ushort> d, Vector128<ushort> a)
    {
        var x = w * a + d * (Vector128.Create((ushort)255) - a) + Vector128.Create((ushort)127);
        return (x + Vector128.Create((ushort)1) + (x >> 8)) >> 8;
    }

    /// <summary>Lab mean/std transfer from <paramref name="original"/> to <paramref name="crop"/> inside the head mask.</summary>
    internal static Mat MatchColors(Mat crop, Mat original, Mat mask)
    {
        using var bin = new Mat();
        Cv2.Threshold(mask, bin, 0.5, 255, ThresholdTypes.Binary);
        using var bin8 = new Mat();
        bin.ConvertTo(bin8, MatType.CV_8UC1);
        using var a = ToLab(crop);
        using var b = ToLab(original);
        Cv2.MeanStdDev(a, out var ma, out var sa, bin8);
        Cv2.MeanStdDev(b, out var mb, out var sb, bin8);
        var channels = Cv2.Split(a);
        try
        {
            for (int c = 0; c < 3; c++)
            {
                // A flat new crop has no spread to stretch: limit the gain so noise is not amplified.
                double gain = sa[c] > 1e-3 ? Math.Clamp(sb[c] / sa[c], 0.25, 4.0) : 1.0;
                channels[c].ConvertTo(channels[c], MatType.CV_32FC1, gain, mb[c] - ma[c] * gain);
            }
            using var merged = new Mat();
            Cv2.Merge(channels, merged);
            using var bgr = new Mat();
            Cv2.CvtColor(merged, bgr, ColorConversionCodes.Lab2BGR);
            var result = new Mat();
            bgr.ConvertTo(result, MatType.CV_8UC3, 255.0);
            return result;
        }
        finally
        {
            foreach (var ch in channels) ch.Dispose();
        }
    }

    private static Mat ToLab(Mat bgr)
    {
        using var f = new Mat();
        bgr.ConvertTo(f, MatType.CV_32FC3, 1.0 / 255);
        var lab = new Mat();
        Cv2.CvtColor(f, lab, ColorConversionCodes.BGR2Lab);
        return lab;
    }

    private static bool TryPoisson(Mat warped, Mat dst)
    {
        using var alpha = new Mat();
        Cv2.ExtractChannel(warped, alpha, 3);
        using var mask8 = new Mat();
        Cv2.Threshold(alpha, mask8, 127, 255, ThresholdTypes.Binary);
        // seamlessClone needs a border of unmasked pixels round the mask inside the destination.
        if (dst.Width < 8 || dst.Height < 8) return false;
        Cv2.Rectangle(mask8, new Rect(0, 0, mask8.Width, mask8.Height), Scalar.All(0), 3);
        var box = Cv2.BoundingRect(mask8);
        if (box.Width < 3 || box.Height < 3) return false;
        var centre = new Point(box.X + box.Width / 2, box.Y + box.Height / 2);
        using var bgr = new Mat();
        Cv2.CvtColor(warped, bgr, ColorConversionCodes.BGRA2BGR);
        using var cloned = new Mat();
        try
        {
            Cv2.SeamlessClone(bgr, dst, mask8, centre, cloned, SeamlessCloneFlags.NormalClone);
        }
        catch (OpenCVException)
        {
            return false;
        }
        // The clone under the warped crop's own weights: its α channel, unchanged.
        using var clonedA = new Mat();
        Cv2.CvtColor(cloned, clonedA, ColorConversionCodes.BGR2BGRA);
        Cv2.InsertChannel(alpha, clonedA, 3);
        Blend(clonedA, dst);
        return true;
    }
}

/// <summary>
/// A BGRA drawing area for <see cref="FacePaster.Paste"/>, kept by one paster (not thread-safe) and grown to the
/// largest face region it has seen.
/// </summary>
public sealed class PasteBuffer : IDisposable
{
    private Mat? _area, _coarse;

    /// <summary>
    /// A view of the top-left <paramref name="size"/> of the area (dispose the view, not the area); the coarse area
    /// is a second one, for a warp at reduced resolution.
    /// </summary>
    internal Mat Region(Size size, bool coarseArea = false)
    {
        ref var area = ref coarseArea ? ref _coarse : ref _area;
        if (area is null || area.Width < size.Width || area.Height < size.Height)
        {
            var grown = new Size(Math.Max(size.Width, area?.Width ?? 0), Math.Max(size.Height, area?.Height ?? 0));
            area?.Dispose();
            area = new Mat(grown, MatType.CV_8UC4);
        }
        return new Mat(area, new Rect(0, 0, size.Width, size.Height));
    }

    public void Dispose()
    {
        _area?.Dispose();
        _area = null;
        _coarse?.Dispose();
        _coarse = null;
    }
}
