using OpenCvSharp;

namespace Deid.Faces;

/// <summary>Non-neural anonymisation of crops and frame regions.</summary>
public static class FaceObfuscation
{
    /// <summary>
    /// Destroys identity in place: the crop is reduced to about 12 samples across (no facial detail survives
    /// that) and the blocks are smoothed away with a wide Gaussian.
    /// </summary>
    public static void Blur(Mat crop)
    {
        Validate(crop, nameof(crop));
        int n = Math.Max(crop.Width, crop.Height);
        // Twelve across whatever the crop's size, so the picture does not depend on it (down to a few pixels per sample).
        int across = Math.Min(n, 12);
        var small = new Size(Math.Max(1, crop.Width * across / n), Math.Max(1, crop.Height * across / n));
        // The wide Gaussian runs on a 32-px working copy (under three of its ~12 samples per working pixel): at full
        // size its ~n/2-tap kernel made blur the costliest stage of the pipeline, at 64 px it still cost more than
        // warping the crop back, for no visible difference after the final smooth upscale.
        int work = Math.Min(n, 32);
        var mid = new Size(Math.Max(1, crop.Width * work / n), Math.Max(1, crop.Height * work / n));
        using var tiny = new Mat();
        using var soft = new Mat();
        Cv2.Resize(crop, tiny, small, 0, 0, InterpolationFlags.Area);
        Cv2.Resize(tiny, soft, mid, 0, 0, InterpolationFlags.Linear);
        // One pass of σ√2, what two of σ make: OpenCV's set-up of a Gaussian costs more than filtering 32² pixels.
        double sigma = Math.Max(1.0, work / 12.0) * Math.Sqrt(2);
        Cv2.GaussianBlur(soft, soft, new Size(0, 0), sigma, sigma, BorderTypes.Reflect101);
        Cv2.Resize(soft, crop, crop.Size(), 0, 0, InterpolationFlags.Linear);
    }

    /// <summary>In place: <paramref name="blocks"/> blocks across the longer side.</summary>
    public static void Pixelate(Mat crop, int blocks = 10)
    {
        Validate(crop, nameof(crop));
        if (blocks < 1) throw new ArgumentOutOfRangeException(nameof(blocks), "blocks must be at least 1");
        int n = Math.Max(crop.Width, crop.Height);
        var small = new Size(Math.Max(1, (int)Math.Round((double)crop.Width * blocks / n)), Math.Max(1, (int)Math.Round((double)crop.Height * blocks / n)));
        using var tiny = new Mat();
        Cv2.Resize(crop, tiny, small, 0, 0, InterpolationFlags.Area);
        Cv2.Resize(tiny, crop, crop.Size(), 0, 0, InterpolationFlags.Nearest);
    }

    /// <summary>
    /// Fail-closed fallback: a strong blur under an ellipse inscribed in <paramref name="region"/> (feathered inwards),
    /// nothing outside the region is touched. Pass a generously enlarged face box.
    /// </summary>
    public static void BlurRegion(Mat frame, Rect region)
    {
        Validate(frame, nameof(frame));
        region &= new Rect(0, 0, frame.Width, frame.Height);
        if (region.Width < 2 || region.Height < 2) return;
        using var roi = new Mat(frame, region);
        using var blurred = roi.Clone();
        Blur(blurred);
        int minSide = Math.Min(region.Width, region.Height);
        float feather = Math.Max(1f, minSide * 0.08f);
        using var mask = new Mat(region.Height, region.Width, MatType.CV_32FC1, Scalar.All(0));
        var axes = new Size2f(Math.Max(1f, region.Width - 2 * feather), Math.Max(1f, region.Height - 2 * feather));
        Cv2.Ellipse(mask, new RotatedRect(new Point2f(region.Width / 2f, region.Height / 2f), axes, 0), Scalar.All(1), -1, LineTypes.AntiAlias);
        Cv2.GaussianBlur(mask, mask, new Size(0, 0), feather / 2.5, feather / 2.5, BorderTypes.Constant);
        using var inv = new Mat();
        Cv2.Subtract(Scalar.All(1.0), mask, inv);
        Cv2.BlendLinear(blurred, roi, mask, inv, roi);
    }

    private static void Validate(Mat m, string name)
    {
        ArgumentNullException.ThrowIfNull(m, name);
        if (m.Empty()) throw new ArgumentException("empty image", name);
        if (m.Depth() != MatType.CV_8U) throw new ArgumentException($"expected an 8-bit image, got {m.Type()}", name);
    }
}
