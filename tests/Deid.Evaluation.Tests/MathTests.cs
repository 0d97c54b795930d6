using Deid.Evaluation;
using Deid.Faces;
using OpenCvSharp;

namespace Deid.Evaluation.Tests;

public class MathTests
{
    [Fact]
    public void MeanStd_ignores_undefined_values()
    {
        var m = MeanStd.Of(new double?[] { 1, null, 3, double.NaN });
        Assert.Equal(2, m.Mean);
        Assert.Equal(1, m.Std);
        Assert.Equal(2, m.Count);
        Assert.Null(MeanStd.Of(new double?[] { null }).Mean);
    }

    [Fact]
    public void Calibration_picks_a_threshold_between_separable_groups()
    {
        // Two people whose embeddings point in different directions, with a little noise.
        var rng = new Random(1);
        float[] Vec(int axis) { var v = new float[8]; v[axis] = 1; for (var i = 0; i < 8; i++) v[i] += (float)(rng.NextDouble() * 0.2); return v; }
        var items = new List<(string, float[])>();
        for (var k = 0; k < 4; k++) { items.Add(("a", Vec(0))); items.Add(("b", Vec(1))); items.Add(("c", Vec(2))); }
        var t = ThresholdCalibration.Calibrate(items, "synthetic");
        Assert.Equal(1.0, t.BalancedAccuracy);
        Assert.Equal(1.0, t.Accuracy);
        Assert.True(t.Threshold > t.DifferentMean && t.Threshold < t.SameMean, t.ToString());
        Assert.Equal(18, t.SamePairs);
        Assert.Equal(48, t.DifferentPairs);
    }

    [Fact]
    public void Cosine_of_parallel_and_orthogonal_vectors()
    {
        Assert.Equal(1.0, OnnxFaceRecognizer.Cosine([1, 2, 3], [2, 4, 6]), 6);
        Assert.Equal(0.0, OnnxFaceRecognizer.Cosine([1, 0], [0, 5]), 6);
        Assert.Equal(1.0, OnnxFaceRecognizer.Mean([[3f, 4f], [3f, 4f]]).Sum(x => (double)x * x), 5);
    }

    [Theory]
    [InlineData(0, 0, 0)]
    [InlineData(20, 0, 0)]
    [InlineData(0, -15, 0)]
    [InlineData(-25, 10, 8)]
    public void HeadPose_recovers_the_rotation_of_a_projected_face(double yaw, double pitch, double roll)
    {
        // Landmarks of a synthetic face: the 3D mean face rotated and projected with the same camera the estimator assumes.
        var pts = SyntheticLandmarks(yaw, pitch, roll, 640, 480);
        var p = HeadPose.Estimate(pts, 640, 480);
        Assert.InRange(p.Yaw, yaw - 2, yaw + 2);
        Assert.InRange(p.Pitch, pitch - 2, pitch + 2);
        Assert.InRange(p.Roll, roll - 2, roll + 2);
    }

    [Fact]
    public void Pose_difference_wraps_around()
    {
        var d = Pose.AbsDiff(new Pose(179, 0, -10), new Pose(-179, 0, 10));
        Assert.Equal(2, d.Yaw, 6);
        Assert.Equal(20, d.Roll, 6);
    }

    [Fact]
    public void Landmark_second_difference_is_zero_for_uniform_motion()
    {
        Point2f[] At(float dx) => Enumerable.Range(0, 68).Select(i => new Point2f(i + dx, 2 * i)).ToArray();
        Assert.Equal(0, LandmarkMetrics.SecondDifference(At(0), At(1), At(2)), 6);
        Assert.Equal(1, LandmarkMetrics.SecondDifference(At(0), At(0), At(1)), 6);
        Assert.Equal(0, LandmarkMetrics.MeanDistance(At(3), At(3)), 6);
    }

    private static Point2f[] SyntheticLandmarks(double yaw, double pitch, double roll, int w, int h)
    {
        // Only the indices the estimator uses matter; the rest are placed at the nose tip.
        var model = new Dictionary<int, Point3d>
        {
            [30] = new(0, 0, 0), [8] = new(0, 63.6, 12.5), [36] = new(-43.3, -32.7, 26), [45] = new(43.3, -32.7, 26),
            [39] = new(-14.8, -32.9, 25), [42] = new(14.8, -32.9, 25), [48] = new(-28.9, 28.9, 24.1), [54] = new(28.9, 28.9, 24.1),
            [27] = new(0, -33.5, 18), [33] = new(0, 6, 9),
        };
        double r = Math.PI / 180;
        double cy = Math.Cos(yaw * r), sy = Math.Sin(yaw * r), cp = Math.Cos(pitch * r), sp = Math.Sin(pitch * r), cr = Math.Cos(roll * r), sr = Math.Sin(roll * r);
        // R = Rz(roll) · Ry(yaw) · Rx(pitch)
        double[,] rx = { { 1, 0, 0 }, { 0, cp, -sp }, { 0, sp, cp } };
        double[,] ry = { { cy, 0, sy }, { 0, 1, 0 }, { -sy, 0, cy } };
        double[,] rz = { { cr, -sr, 0 }, { sr, cr, 0 }, { 0, 0, 1 } };
        var rot = Mul(rz, Mul(ry, rx));
        double f = Math.Max(w, h);
        var pts = new Point2f[68];
        for (var i = 0; i < 68; i++)
        {
            var m = model.TryGetValue(i, out var v) ? v : model[30];
            var x = rot[0, 0] * m.X + rot[0, 1] * m.Y + rot[0, 2] * m.Z;
            var y = rot[1, 0] * m.X + rot[1, 1] * m.Y + rot[1, 2] * m.Z;
            var z = rot[2, 0] * m.X + rot[2, 1] * m.Y + rot[2, 2] * m.Z + 600;
            pts[i] = new Point2f((float)(f * x / z + w / 2.0), (float)(f * y / z + h / 2.0));
        }
        return pts;
    }

    private static double[,] Mul(double[,] a, double[,] b)
    {
        var c = new double[3, 3];
        for (var i = 0; i < 3; i++) for (var j = 0; j < 3; j++) for (var k = 0; k < 3; k++) c[i, j] += a[i, k] * b[k, j];
        return c;
    }
}
