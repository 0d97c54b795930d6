using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>One frame's faces with their 68 landmarks, as the pipeline's detect stage finds them.</summary>
public static class FrameDetector
{
    /// <summary>
    /// Black margin added around each frame before detection, as a fraction of its long side: HOG only scores
    /// windows that lie inside the image, so without it a face cut by the frame edge is never found.
    /// </summary>
    public const double EdgePadFraction = 0.08;

    public static DlibFaceDetector CreateDetector() => new(maxSide: (int)Math.Round(720 * (1 + 2 * EdgePadFraction)));

    /// <summary>Boxes and landmarks in frame coordinates; a face whose landmarks fail keeps its box (it is then blurred).</summary>
    public static List<FaceDetection> Detect(DlibFaceDetector detector, DlibShapePredictor predictor, Mat frame)
    {
        var found = new List<FaceDetection>();
        var pad = (int)Math.Round(EdgePadFraction * Math.Max(frame.Width, frame.Height));
        using var image = new Mat();
        Cv2.CopyMakeBorder(frame, image, pad, pad, pad, pad, BorderTypes.Constant, Scalar.All(0));
        foreach (var padded in detector.Detect(image))
        {
            var box = padded with { Left = padded.Left - pad, Right = padded.Right - pad, Top = padded.Top - pad, Bottom = padded.Bottom - pad };
            FaceLandmarks? landmarks;
            try
            {
                var points = predictor.Predict(image, padded).Points;
                landmarks = points.Any(p => !float.IsFinite(p.X) || !float.IsFinite(p.Y))
                    ? null
                    : new FaceLandmarks(points.Select(p => new Point2f(p.X - pad, p.Y - pad)).ToArray());
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Fail closed: no landmarks means the face is blurred by its box, not skipped.
                landmarks = null;
            }
            found.Add(new FaceDetection(box, landmarks));
        }
        return found;
    }
}
