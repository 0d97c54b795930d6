using Deid.Faces;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Faces.Tests;

/// <summary>Real frames and photos for the tests; frames are extracted once per run with ffmpeg.</summary>
internal static class TestMedia
{
    private static readonly TempDir Scratch = new();
    private static readonly Dictionary<string, string[]> Extracted = new();
    private static readonly Lazy<DlibShapePredictor> SharedPredictor = new(() => DlibShapePredictor.Load(TestPaths.DlibPredictor));

    public static DlibShapePredictor Predictor
    {
        get
        {
            if (!File.Exists(TestPaths.DlibPredictor)) Assert.Skip("Debian's libdlib-data is not installed (" + TestPaths.DlibPredictor + ")");
            return SharedPredictor.Value;
        }
    }

    public static string[] Photos => Directory.GetFiles(Path.Combine(TestPaths.Shared, "media", "identities"), "photo_s*.jpg").Order().ToArray();

    /// <summary>PNG paths of <paramref name="count"/> frames taken every <paramref name="every"/> frames.</summary>
    public static string[] Frames(string video, int count, int every)
    {
        var key = $"{video}:{count}:{every}";
        lock (Extracted)
        {
            if (Extracted.TryGetValue(key, out var done)) return done;
            var dir = Directory.CreateDirectory(Scratch.File(key.Replace(':', '_'))).FullName;
            Tool.Ffmpeg("-i", TestPaths.Video(video), "-vf", $"select=not(mod(n\\,{every}))", "-fps_mode", "vfr",
                "-frames:v", count.ToString(), Path.Combine(dir, "f%03d.png"));
            var files = Directory.GetFiles(dir, "*.png").Order().ToArray();
            Assert.Equal(count, files.Length);
            Extracted[key] = files;
            return files;
        }
    }

    public static Mat Read(string path)
    {
        var m = Cv2.ImRead(path, ImreadModes.Color);
        Assert.False(m.Empty(), "cannot read " + path);
        return m;
    }

    /// <summary>The strongest face and its landmarks.</summary>
    public static (FaceBox Box, FaceLandmarks Landmarks) Face(Mat frame, DlibFaceDetector detector)
    {
        var faces = detector.Detect(frame);
        Assert.NotEmpty(faces);
        return (faces[0], Predictor.Predict(frame, faces[0]));
    }

    public static double MeanAbsDiff(Mat a, Mat b, Mat? mask = null)
    {
        using var d = new Mat();
        Cv2.Absdiff(a, b, d);
        var mean = mask is null ? Cv2.Mean(d) : Cv2.Mean(d, mask);
        return (mean.Val0 + mean.Val1 + mean.Val2) / 3.0;
    }
}
