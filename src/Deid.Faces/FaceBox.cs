using OpenCvSharp;

namespace Deid.Faces;

/// <summary>An axis-aligned face box in pixel coordinates (right/bottom exclusive) with a detector score.</summary>
public readonly record struct FaceBox(float Left, float Top, float Right, float Bottom, float Score)
{
    public float Width => Right - Left;
    public float Height => Bottom - Top;
    public float CenterX => (Left + Right) * 0.5f;
    public float CenterY => (Top + Bottom) * 0.5f;
    public float Area => Math.Max(0, Width) * Math.Max(0, Height);

    /// <summary>The smallest integer rectangle that contains the box.</summary>
    public Rect ToRect()
    {
        int l = (int)MathF.Floor(Left), t = (int)MathF.Floor(Top);
        int r = (int)MathF.Ceiling(Right), b = (int)MathF.Ceiling(Bottom);
        return new Rect(l, t, Math.Max(0, r - l), Math.Max(0, b - t));
    }

    /// <summary>The box grown (factor &gt; 1) or shrunk about its centre.</summary>
    public FaceBox Scale(float factor)
    {
        float hw = Width * 0.5f * factor, hh = Height * 0.5f * factor;
        return new FaceBox(CenterX - hw, CenterY - hh, CenterX + hw, CenterY + hh, Score);
    }

    /// <summary>The box limited to an image of the given size.</summary>
    public FaceBox Clip(int width, int height)
    {
        float l = Math.Clamp(Left, 0, width), r = Math.Clamp(Right, 0, width);
        float t = Math.Clamp(Top, 0, height), b = Math.Clamp(Bottom, 0, height);
        return new FaceBox(l, t, Math.Max(l, r), Math.Max(t, b), Score);
    }

    public static float IoU(FaceBox a, FaceBox b)
    {
        float iw = Math.Min(a.Right, b.Right) - Math.Max(a.Left, b.Left);
        float ih = Math.Min(a.Bottom, b.Bottom) - Math.Max(a.Top, b.Top);
        if (iw <= 0 || ih <= 0) return 0;
        float inter = iw * ih;
        float union = a.Area + b.Area - inter;
        return union > 0 ? inter / union : 0;
    }
}

/// <summary>The 68 iBUG/dlib landmarks of one face, in frame pixel coordinates.</summary>
public sealed class FaceLandmarks
{
    public const int Count = 68;

    public FaceLandmarks(Point2f[] points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Length != Count)
            throw new ArgumentException($"expected {Count} landmarks, got {points.Length}", nameof(points));
        Points = points;
    }

    public Point2f[] Points { get; }

    /// <summary>Tight box around all landmarks (score 1).</summary>
    public FaceBox Bounds()
    {
        float l = float.MaxValue, t = float.MaxValue, r = float.MinValue, b = float.MinValue;
        foreach (var p in Points)
        {
            l = Math.Min(l, p.X); t = Math.Min(t, p.Y);
            r = Math.Max(r, p.X); b = Math.Max(b, p.Y);
        }
        return new FaceBox(l, t, r, b, 1f);
    }

    /// <summary>Mean of the points in [from, to).</summary>
    public Point2f Mean(int from, int to)
    {
        double x = 0, y = 0;
        for (int i = from; i < to; i++) { x += Points[i].X; y += Points[i].Y; }
        int n = to - from;
        return new Point2f((float)(x / n), (float)(y / n));
    }
}
