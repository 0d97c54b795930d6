using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>One frame's faces with their 68 landmarks, as the pipeline's detect stage finds them.</summary>
public static class FrameDetector
{
    /// <summary>
    /// Boxes and landmarks in frame coordinates; a face whose landmarks fail keeps its box (it is then blurred).
    /// The shape predictor runs on the unpadded frame: dlib reads pixels outside the image as 0, exactly what the
    /// HOG finder's black margin holds, so landmarks of faces cut by the edge are unchanged.
    /// </summary>
    public static List<FaceDetection> Detect(IFaceFinder finder, DlibShapePredictor predictor, Mat frame) =>
        Landmarks(predictor, frame, finder.Find(frame));

    /// <summary>The landmarks of each box found in a frame (see <see cref="Detect"/>).</summary>
    public static List<FaceDetection> Landmarks(DlibShapePredictor predictor, Mat frame, IReadOnlyList<FaceBox> boxes)
    {
        var found = new List<FaceDetection>(boxes.Count);
        foreach (var box in boxes)
        {
            FaceLandmarks? landmarks;
            try
            {
                landmarks = predictor.Predict(frame, box);
                if (landmarks.Points.Any(p => !float.IsFinite(p.X) || !float.IsFinite(p.Y))) landmarks = null;
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
