using OpenCvSharp;

namespace Deid.Evaluation;

public static class LandmarkMetrics
{
    /// <summary>Applies a 2×3 affine (row-major, 6 doubles) to points.</summary>
    public static Point2f[] Transform(IReadOnlyList<Point2f> pts, double[] m)
    {
        var r = new Point2f[pts.Count];
        for (var i = 0; i < pts.Count; i++)
            r[i] = new Point2f((float)(m[0] * pts[i].X + m[1] * pts[i].Y + m[2]), (float)(m[3] * pts[i].X + m[4] * pts[i].Y + m[5]));
        return r;
    }

    public static double[] ToArray(Mat m2x3)
    {
        using var d = new Mat();
        m2x3.ConvertTo(d, MatType.CV_64F);
        var r = new double[6];
        for (var y = 0; y < 2; y++)
            for (var x = 0; x < 3; x++)
                r[y * 3 + x] = d.At<double>(y, x);
        return r;
    }

    /// <summary>Mean Euclidean distance between corresponding points.</summary>
    public static double MeanDistance(IReadOnlyList<Point2f> a, IReadOnlyList<Point2f> b)
    {
        if (a.Count != b.Count || a.Count == 0) throw new ArgumentException("landmark sets differ in size");
        double s = 0;
        for (var i = 0; i < a.Count; i++) s += Math.Sqrt(Sq(a[i].X - b[i].X) + Sq(a[i].Y - b[i].Y));
        return s / a.Count;
    }

    /// <summary>Mean over points of |p(t+1) − 2p(t) + p(t−1)| — acceleration, which is what viewers see as jitter.</summary>
    public static double SecondDifference(IReadOnlyList<Point2f> prev, IReadOnlyList<Point2f> cur, IReadOnlyList<Point2f> next)
    {
        double s = 0;
        for (var i = 0; i < cur.Count; i++)
            s += Math.Sqrt(Sq(next[i].X - 2 * cur[i].X + prev[i].X) + Sq(next[i].Y - 2 * cur[i].Y + prev[i].Y));
        return s / cur.Count;
    }

    /// <summary>Distance between the outer eye corners: a size scale that does not depend on the detector's box.</summary>
    public static double InterOcular(IReadOnlyList<Point2f> lm) => Math.Sqrt(Sq(lm[36].X - lm[45].X) + Sq(lm[36].Y - lm[45].Y));

    private static double Sq(double v) => v * v;
}
