using Deid.Faces;
using OpenCvSharp;

namespace Deid.Pipeline;

/// <summary>A face found in a still image: box and 68 landmarks in image pixels.</summary>
public sealed record FoundFace(FaceBox Box, FaceLandmarks Landmarks);

/// <summary>
/// Image → faces → aligned face, the one way Deid turns a still picture (an identity photo, a sampled frame, a
/// reenactment's still) into FFHQ-aligned crops: the pipeline's own face finder, dlib's 68 landmarks, the FFHQ aligner.
/// </summary>
public sealed class FaceImageService(FaceFinderFactory finders, DlibShapePredictor predictor)
{
    /// <summary>
    /// Every face with usable landmarks, largest first. A picture in which none is found is searched once more with a
    /// replicated border of a quarter of its size on each side: a tightly cropped portrait leaves the detector no
    /// context around the face.
    /// </summary>
    public IReadOnlyList<FoundFace> Find(Mat bgr)
    {
        using var finder = finders.Create();
        var found = Detect(finder, bgr, 0, 0);
        if (found.Count > 0) return found;
        int px = bgr.Width / 4, py = bgr.Height / 4;
        using var padded = new Mat();
        Cv2.CopyMakeBorder(bgr, padded, py, py, px, px, BorderTypes.Replicate);
        return Detect(finder, padded, px, py);
    }

    private List<FoundFace> Detect(IFaceFinder finder, Mat image, int dx, int dy) =>
        FrameDetector.Detect(finder, predictor, image)
            .Where(d => d.Landmarks != null)
            .Select(d => new FoundFace(
                d.Box with { Left = d.Box.Left - dx, Right = d.Box.Right - dx, Top = d.Box.Top - dy, Bottom = d.Box.Bottom - dy },
                new FaceLandmarks(d.Landmarks!.Points.Select(p => new Point2f(p.X - dx, p.Y - dy)).ToArray())))
            .OrderByDescending(f => f.Box.Area)
            .ToList();

    /// <summary>The largest face and how many there were.</summary>
    /// <exception cref="PipelineException">no face in the image.</exception>
    public (FoundFace Face, int Count) Largest(Mat bgr, string what)
    {
        var faces = Find(bgr);
        if (faces.Count == 0) throw new PipelineException($"no face found in {what}");
        return (faces[0], faces.Count);
    }

    public static AlignedFace Align(Mat bgr, FoundFace face, int size) => new FfhqAligner(size).Align(bgr, face.Landmarks);

    /// <summary>Reads a picture as 8-bit BGR.</summary>
    /// <exception cref="PipelineException">missing or not a readable image.</exception>
    public static Mat ReadImage(string path, string what)
    {
        if (!File.Exists(path)) throw new PipelineException($"{what} not found: {path}");
        Mat image;
        try { image = Cv2.ImRead(path, ImreadModes.Color); }
        catch (OpenCVException e) { throw new PipelineException($"{what} is not a readable image: {path} ({e.Message})", e); }
        if (image.Empty())
        {
            image.Dispose();
            throw new PipelineException($"{what} is not a readable image: {path}");
        }
        return image;
    }

    /// <summary>"the largest of N faces (at x,y, WxH)", for warnings.</summary>
    public static string Describe(FoundFace f, int count) =>
        $"the largest of {count} faces (at {f.Box.Left:F0},{f.Box.Top:F0}, {f.Box.Width:F0}x{f.Box.Height:F0})";
}
