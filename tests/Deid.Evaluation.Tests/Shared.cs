using Deid.Faces;
using Deid.Evaluation;
using Deid.TestSupport;

namespace Deid.Evaluation.Tests;

/// <summary>One set of loaded networks and one calibration for the whole test run (loading costs seconds).</summary>
public static class Shared
{
    private static readonly Lazy<EvalContext> Lazy = new(() => EvalContext.Create(Options()), LazyThreadSafetyMode.ExecutionAndPublication);

    public static string RecognizerPath => Path.Combine(TestPaths.Models, OnnxFaceRecognizer.RelativePath);

    public static void RequireRecognizer()
    {
        if (!File.Exists(RecognizerPath))
            Assert.Skip($"{RecognizerPath} is absent (npm package faceplugin-face-recognition-js@0.0.1, model/fr_feature.onnx; `deid models fetch`)");
    }

    public static EvaluationOptions Options(int stride = 1, string? target = null) => new()
    {
        RecognizerPath = RecognizerPath,
        CalibrationDirectory = TestPaths.Golden("face-api", "people"),
        Stride = stride,
        Target = target,
        ContactSheetFrames = 4,
    };

    public static EvalContext Context
    {
        get
        {
            RequireRecognizer();
            return Lazy.Value;
        }
    }

    /// <summary>A short re-encoded cut of a shared clip (keyframe-exact, constant frame rate).</summary>
    public static string Clip(TempDir dir, string name, double seconds, string? filter = null)
    {
        var path = dir.File(Path.GetFileNameWithoutExtension(name) + (filter is null ? "" : "_f") + ".mp4");
        var args = new List<string> { "-i", TestPaths.Video(name), "-t", seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "-an" };
        if (filter != null) { args.Add("-vf"); args.Add(filter); }
        args.AddRange(["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", path]);
        Tool.Ffmpeg([.. args]);
        return path;
    }
}
