using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>A 2-D affine map p ↦ (A x + B y + C, D x + E y + F), as plain numbers (no native Mat to dispose).</summary>
public readonly record struct Affine(double A, double B, double C, double D, double E, double F)
{
    public static Affine Identity => new(1, 0, 0, 0, 1, 0);

    /// <summary>From a 2x3 CV_64F matrix.</summary>
    public static Affine FromMat(Mat m) =>
        new(m.At<double>(0, 0), m.At<double>(0, 1), m.At<double>(0, 2), m.At<double>(1, 0), m.At<double>(1, 1), m.At<double>(1, 2));

    public Mat ToMat()
    {
        var m = new Mat(2, 3, MatType.CV_64FC1);
        m.Set(0, 0, A); m.Set(0, 1, B); m.Set(0, 2, C);
        m.Set(1, 0, D); m.Set(1, 1, E); m.Set(1, 2, F);
        return m;
    }

    /// <summary>this ∘ other: apply <paramref name="other"/> first.</summary>
    public Affine Then(Affine first) => new(
        A * first.A + B * first.D, A * first.B + B * first.E, A * first.C + B * first.F + C,
        D * first.A + E * first.D, D * first.B + E * first.E, D * first.C + E * first.F + F);

    public Affine Inverse()
    {
        var det = A * E - B * D;
        if (!(Math.Abs(det) > 1e-12)) throw new InvalidOperationException("singular affine transform");
        double ia = E / det, ib = -B / det, id = -D / det, ie = A / det;
        return new(ia, ib, -(ia * C + ib * F), id, ie, -(id * C + ie * F));
    }

    public Point2d Apply(double x, double y) => new(A * x + B * y + C, D * x + E * y + F);

    /// <summary>Uniform scale of the linear part (√|det|).</summary>
    public double Scale => Math.Sqrt(Math.Abs(A * E - B * D));

    /// <summary>Rotation of the linear part in degrees (image axes: positive turns x towards y, i.e. clockwise on screen).</summary>
    public double AngleDegrees => Math.Atan2(D, A) * 180 / Math.PI;

    public static Affine Translation(double dx, double dy) => new(1, 0, dx, 0, 1, dy);

    /// <summary>Scale by <paramref name="s"/> about (cx, cy).</summary>
    public static Affine ScaleAbout(double s, double cx, double cy) => new(s, 0, cx - s * cx, 0, s, cy - s * cy);
}
