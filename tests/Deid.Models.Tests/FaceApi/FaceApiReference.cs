using System.Text.Json;
using Deid.TestSupport;
using TorchSharp;

namespace Deid.Models.Tests.FaceApi;

/// <summary>
/// face-api.js 1.7.15 outputs recorded in headless Chromium (tfjs CPU backend) by scripts/faceapi-reference/run.sh.
/// Committed, so the tests need neither Chromium nor npm.
/// </summary>
internal sealed record FaceApiReference(string FaceApiVersion, string TfjsVersion, string Backend,
    Dictionary<string, FaceApiReference.SingleImage> Images, FaceApiReference.FacesImage Faces)
{
    public sealed record SingleImage(int Width, int Height, uint DecodedRgbFnv1a, float[][] Landmarks, float[][] TinyLandmarks,
        float[] Descriptor, string? Input112RgbBase64, string? Input150RgbBase64);

    public sealed record FacesImage(string Image, int Width, int Height, List<Detection> Detections);

    /// <summary>Box and AlignedRect are face-api's unrounded boxes; Patch holds the browser-decoded pixels around the face.</summary>
    /// <summary>AlignedRect is withFaceLandmarks' minimum-box alignment; DescriptorRect the dlib-style one withFaceDescriptors crops.</summary>
    public sealed record Detection(float Score, Rect Box, float[][] Landmarks, float[][] UnshiftedLandmarks, Rect AlignedRect,
        Rect DescriptorRect, float[] Descriptor, Patch Patch);

    public sealed record Rect(double X, double Y, double Width, double Height);

    public sealed record Patch(int X, int Y, int Width, int Height, string Png);

    public static string Path => System.IO.Path.Combine(TestPaths.RepoRoot, "tests", "Deid.Models.Tests", "FaceApi", "Reference", "faceapi-1.7.15-chromium.json");

    private static readonly Lazy<FaceApiReference> _load = new(() =>
        JsonSerializer.Deserialize<FaceApiReference>(File.ReadAllText(Path), new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!);

    public static FaceApiReference Load() => _load.Value;

    /// <summary>32-bit FNV-1a, as page.html hashes the decoded RGB.</summary>
    public static uint Fnv1a(ReadOnlySpan<byte> bytes)
    {
        var h = 0x811c9dc5u;
        foreach (var b in bytes) { h ^= b; h *= 0x01000193u; }
        return h;
    }

    /// <summary>[1,3,N,N] float from a base64 RGB dump of face-api's network input.</summary>
    public static torch.Tensor RgbTensor(string base64, int size)
    {
        var bytes = Convert.FromBase64String(base64);
        using var t = torch.tensor(bytes, new long[] { size, size, 3 }, torch.ScalarType.Byte);
        using var f = t.to_type(torch.ScalarType.Float32);
        return f.permute(2, 0, 1).unsqueeze(0).contiguous();
    }

    public static (float Mean, float Max) Distances(float[] got, IReadOnlyList<(float X, float Y)> want)
    {
        var d = Enumerable.Range(0, want.Count).Select(i => MathF.Sqrt(MathF.Pow(got[2 * i] - want[i].X, 2) + MathF.Pow(got[2 * i + 1] - want[i].Y, 2))).ToArray();
        return (d.Average(), d.Max());
    }

    public static (float X, float Y)[] Points(float[][] p) => p.Select(q => (q[0], q[1])).ToArray();
}

/// <summary>
/// face-api.js's face cropping and alignment, for feeding our networks exactly what face-api fed its own on faces.jpg.
/// </summary>
internal static class FaceApiCrops
{
    /// <summary>extractFaces: Box.floor() (x, y, width, height each floored), then clipAtImageBorders (clip, floor).</summary>
    public static (int X, int Y, int Width, int Height) ExtractRect(FaceApiReference.Rect r, int imageWidth, int imageHeight)
    {
        double x = Math.Floor(r.X), y = Math.Floor(r.Y), w = Math.Floor(r.Width), h = Math.Floor(r.Height);
        var cx = Math.Max(x, 0); var cy = Math.Max(y, 0);
        var cw = Math.Min(x + w - cx, imageWidth - cx); var ch = Math.Min(y + h - cy, imageHeight - cy);
        return ((int)Math.Floor(cx), (int)Math.Floor(cy), (int)Math.Floor(cw), (int)Math.Floor(ch));
    }

    /// <summary>FaceLandmarks.align() in 1.7.15 (default, not dlib): min bbox of the 68 points, padded by 0.2 of its size.</summary>
    public static FaceApiReference.Rect Align(float[] xy)
    {
        var xs = Enumerable.Range(0, xy.Length / 2).Select(i => (double)xy[2 * i]).ToArray();
        var ys = Enumerable.Range(0, xy.Length / 2).Select(i => (double)xy[2 * i + 1]).ToArray();
        double minX = xs.Min(), minY = ys.Min(), w = xs.Max() - minX, h = ys.Max() - minY;
        return new(minX - 0.1 * w, minY - 0.1 * h, 1.2 * w, 1.2 * h);
    }

    /// <summary>
    /// FaceLandmarks.align(null, { useDlibAlignment: true }), which 1.7.15's withFaceDescriptors uses instead of the
    /// minimum box: a square of side floor(mean eye–mouth distance / 0.45) around the eyes/mouth centre.
    /// cropWidth/cropHeight are the landmarks' own image dims (the detection crop), which face-api uses to cap the size.
    /// </summary>
    public static FaceApiReference.Rect AlignDlib(float[] xy, int cropWidth, int cropHeight)
    {
        (double X, double Y) Centre(int from, int to)
        {
            double sx = 0, sy = 0;
            for (var i = from; i < to; i++) { sx += xy[2 * i]; sy += xy[2 * i + 1]; }
            return (sx / (to - from), sy / (to - from));
        }
        var leftEye = Centre(36, 42); var rightEye = Centre(42, 48); var mouth = Centre(48, 68);
        double ToMouth((double X, double Y) p) => Math.Sqrt(Math.Pow(mouth.X - p.X, 2) + Math.Pow(mouth.Y - p.Y, 2));
        var size = Math.Floor((ToMouth(leftEye) + ToMouth(rightEye)) / 2 / 0.45);
        var cx = (leftEye.X + rightEye.X + mouth.X) / 3; var cy = (leftEye.Y + rightEye.Y + mouth.Y) / 3;
        var x = Math.Floor(Math.Max(0, cx - 0.5 * size)); var y = Math.Floor(Math.Max(0, cy - 0.43 * size));
        return new(x, y, Math.Min(size, cropWidth + x), Math.Min(size, cropHeight + y));
    }

    /// <summary>The crop [1,3,h,w] of image rect r, taken from a reference patch (which must contain it).</summary>
    public static torch.Tensor Crop(torch.Tensor patch, FaceApiReference.Patch p, (int X, int Y, int Width, int Height) r)
    {
        if (r.X < p.X || r.Y < p.Y || r.X + r.Width > p.X + p.Width || r.Y + r.Height > p.Y + p.Height)
            throw new InvalidOperationException($"crop {r} is outside the reference patch {p.X},{p.Y} {p.Width}x{p.Height}");
        using var rows = patch.narrow(2, r.Y - p.Y, r.Height);
        return rows.narrow(3, r.X - p.X, r.Width).contiguous();
    }
}
