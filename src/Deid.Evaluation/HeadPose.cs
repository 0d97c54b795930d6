using OpenCvSharp;

namespace Deid.Evaluation;

/// <summary>Head rotation in degrees: yaw (left/right), pitch (up/down), roll (in-plane tilt).</summary>
public readonly record struct Pose(double Yaw, double Pitch, double Roll)
{
    /// <summary>Absolute per-angle difference, wrapped into [0, 180].</summary>
    public static Pose AbsDiff(Pose a, Pose b) => new(Wrap(a.Yaw - b.Yaw), Wrap(a.Pitch - b.Pitch), Wrap(a.Roll - b.Roll));
    private static double Wrap(double d) { d = Math.IEEERemainder(d, 360); return Math.Abs(d); }
}

/// <summary>Head pose from 68 landmarks by SolvePnP against a generic 3D face (camera from the image size).</summary>
public static class HeadPose
{
    // Generic adult face in mm, nose tip at the origin; x right, y down, z away from the camera (OpenCV camera axes),
    // so a frontal face gives an identity rotation and the Euler angles stay near 0 instead of near ±180.
    private static readonly (int Index, Point3d P)[] Model =
    [
        (30, new Point3d(0, 0, 0)),          // nose tip
        (8, new Point3d(0, 63.6, 12.5)),     // chin
        (36, new Point3d(-43.3, -32.7, 26)), // left eye outer corner
        (45, new Point3d(43.3, -32.7, 26)),  // right eye outer corner
        (39, new Point3d(-14.8, -32.9, 25)), // left eye inner corner (stabilises pitch)
        (42, new Point3d(14.8, -32.9, 25)),  // right eye inner corner
        (48, new Point3d(-28.9, 28.9, 24.1)),// left mouth corner
        (54, new Point3d(28.9, 28.9, 24.1)), // right mouth corner
        (27, new Point3d(0, -33.5, 18)),     // nose bridge top
        (33, new Point3d(0, 6, 9)),          // nose base
    ];

    public static Pose Estimate(IReadOnlyList<Point2f> landmarks68, int imageWidth, int imageHeight)
    {
        if (landmarks68.Count != 68) throw new ArgumentException("expected 68 landmarks", nameof(landmarks68));
        var obj = Model.Select(m => new Point3f((float)m.P.X, (float)m.P.Y, (float)m.P.Z)).ToArray();
        var img = Model.Select(m => landmarks68[m.Index]).ToArray();
        double f = Math.Max(imageWidth, imageHeight);
        var camera = new double[,] { { f, 0, imageWidth / 2.0 }, { 0, f, imageHeight / 2.0 }, { 0, 0, 1 } };
        // Start Levenberg-Marquardt from an upright frontal face at the distance its eye span implies. Without a
        // guess, SolvePnP's own initialisation (DLT / homography of a nearly planar point set) lands now and then
        // in a wrong minimum, a face turned upside down (roll ≈ ±180° on an upright face, from one frame to the
        // next); from the frontal start it converges to the pose the face really has, and does so the same way
        // in every frame, so angles are continuous over time.
        var eyes = landmarks68[45] - landmarks68[36];
        var eyeSpan = Math.Max(1.0, Math.Sqrt(eyes.X * eyes.X + eyes.Y * eyes.Y));
        var z = f * (Model[3].P.X - Model[2].P.X) / eyeSpan;
        var nose = landmarks68[30];
        var rvec = new double[3];
        var tvec = new[] { (nose.X - imageWidth / 2.0) * z / f, (nose.Y - imageHeight / 2.0) * z / f, z };
        Cv2.SolvePnP(obj, img, camera, new double[4], ref rvec, ref tvec, useExtrinsicGuess: true, SolvePnPMethod.Iterative);
        Cv2.Rodrigues(rvec, out var r, out _);
        return FromRotation(r);
    }

    /// <summary>
    /// R = Rz(roll)·Ry(yaw)·Rx(pitch) decomposition. Every rotation has two such angle triples; the one with yaw in
    /// [-90°, 90°] is taken (a face turned further would show the back of the head), so a frontal upright face reads
    /// near (0, 0, 0). Roll is positive for a head tilted clockwise on screen (image y points down).
    /// </summary>
    public static Pose FromRotation(double[,] r)
    {
        var sy = Math.Sqrt(r[0, 0] * r[0, 0] + r[1, 0] * r[1, 0]);
        double pitch, yaw, roll;
        if (sy > 1e-6)
        {
            pitch = Math.Atan2(r[2, 1], r[2, 2]);
            yaw = Math.Atan2(-r[2, 0], sy);
            roll = Math.Atan2(r[1, 0], r[0, 0]);
        }
        else
        {
            pitch = Math.Atan2(-r[1, 2], r[1, 1]);
            yaw = Math.Atan2(-r[2, 0], sy);
            roll = 0;
        }
        const double deg = 180 / Math.PI;
        return new Pose(yaw * deg, pitch * deg, roll * deg);
    }
}
