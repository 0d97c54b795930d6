using Deid.Faces;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Evaluation.Tests;

/// <summary>Head pose on real faces: the shared talking-head clips and a face rotated by a known angle.</summary>
public class HeadPoseTests
{
    private static readonly Lazy<DlibShapePredictor> Predictor = new(() => DlibShapePredictor.Load(TestPaths.DlibPredictor));

    private static DlibShapePredictor RequirePredictor()
    {
        if (!File.Exists(TestPaths.DlibPredictor)) Assert.Skip("Debian's libdlib-data is not installed (" + TestPaths.DlibPredictor + ")");
        return Predictor.Value;
    }

    public static TheoryData<string> Clips => new()
    {
        "talk_d3.mp4", "talk_d0_noaudio.mp4", "talk_d13_portrait_noaudio.mp4", "wide_s13.mp4", "talk_1080p.mp4", "talk_small.mp4",
    };

    [Theory]
    [MemberData(nameof(Clips))]
    public void Faces_of_the_shared_clips_read_upright_and_change_smoothly(string clip)
    {
        var predictor = RequirePredictor();
        using var tmp = new TempDir();
        using var detector = new DlibFaceDetector();
        // Every 3rd frame of the first 3 s: close enough in time that a real head turns a few degrees between samples.
        Tool.Ffmpeg("-i", TestPaths.Video(clip), "-t", "3", "-vf", "select=not(mod(n\\,3))", "-fps_mode", "vfr", tmp.File("f%03d.png"));
        Pose? previous = null;
        var log = TestContext.Current.TestOutputHelper;
        foreach (var file in Directory.GetFiles(tmp.Path, "*.png").Order())
        {
            using var img = Cv2.ImRead(file, ImreadModes.Color);
            var faces = detector.Detect(img);
            if (faces.Count == 0) { previous = null; continue; }
            var lm = predictor.Predict(img, faces.OrderByDescending(b => b.Area).First());
            var p = HeadPose.Estimate(lm.Points, img.Width, img.Height);
            log?.WriteLine($"{Path.GetFileName(file)} yaw {p.Yaw:0.0} pitch {p.Pitch:0.0} roll {p.Roll:0.0}");
            Assert.InRange(p.Roll, -60, 60);
            Assert.InRange(p.Yaw, -80, 80);
            Assert.InRange(p.Pitch, -60, 60);
            if (previous is { } q)
            {
                var d = Pose.AbsDiff(p, q);
                Assert.True(Math.Max(d.Yaw, Math.Max(d.Pitch, d.Roll)) < 30, $"{file}: jump from {q} to {p}");
            }
            previous = p;
        }
    }

    [Theory]
    [InlineData(15)]
    [InlineData(-25)]
    public void A_face_rotated_in_the_image_plane_reads_that_roll(int degrees)
    {
        var predictor = RequirePredictor();
        using var tmp = new TempDir();
        using var detector = new DlibFaceDetector();
        // One frontal frame, and the same frame turned clockwise by ffmpeg (positive angle = clockwise on screen,
        // which is positive roll in image coordinates, y down).
        var radians = $"{degrees}*PI/180";
        Tool.Ffmpeg("-i", TestPaths.Video("talk_d0_noaudio.mp4"), "-frames:v", "1", tmp.File("upright.png"));
        Tool.Ffmpeg("-i", tmp.File("upright.png"), "-vf", $"rotate={radians}:fillcolor=gray", tmp.File("rotated.png"));
        Pose Measure(string file)
        {
            using var img = Cv2.ImRead(file, ImreadModes.Color);
            var faces = detector.Detect(img);
            Assert.NotEmpty(faces);
            var lm = predictor.Predict(img, faces.OrderByDescending(b => b.Area).First());
            return HeadPose.Estimate(lm.Points, img.Width, img.Height);
        }
        var upright = Measure(tmp.File("upright.png"));
        var rotated = Measure(tmp.File("rotated.png"));
        TestContext.Current.TestOutputHelper?.WriteLine($"upright {upright}, rotated by {degrees}°: {rotated}");
        Assert.InRange(rotated.Roll - upright.Roll, degrees - 3, degrees + 3);
        // Turning the picture does not turn the head left/right or up/down; dlib's landmarks on the turned face
        // are not the same points rotated, and yaw is the angle most sensitive to that (6° at -25° here).
        Assert.InRange(rotated.Yaw - upright.Yaw, -8, 8);
        Assert.InRange(rotated.Pitch - upright.Pitch, -8, 8);
    }
}
