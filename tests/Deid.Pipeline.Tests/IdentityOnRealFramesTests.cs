using Deid.Faces;
using Deid.Models;
using Deid.Models.FaceApi;
using Deid.TestSupport;
using OpenCvSharp;
using TorchSharp;

namespace Deid.Pipeline.Tests;

/// <summary>
/// E_id as the method uses it: dlib landmarks → FFHQ-aligned 256 crop (the pipeline's aligner) → the face-api
/// recognizer's chip cut from that crop (FaceRecognitionNet.Encode). On real frames of the six shared clips, one
/// speaker each, the codes must tell the speakers apart.
/// </summary>
public class IdentityOnRealFramesTests
{
    private static readonly string[] Clips =
        ["talk_d0_noaudio.mp4", "talk_d3.mp4", "talk_d13_portrait_noaudio.mp4", "talk_small.mp4", "talk_1080p.mp4", "wide_s13.mp4"];

    // Within the shortest clip (3.1 s), far enough apart for pose and expression to change.
    private static readonly string[] Times = ["0.3", "1.5", "2.9"];

    [Fact]
    public void AlignedCropCodes_SameSpeakerNearest_AndWithinFaceApisThreshold()
    {
        var modelDir = Path.Combine(TestPaths.Models, "face-api");
        if (!File.Exists(Path.Combine(modelDir, FaceRecognitionNet.ManifestName)))
            Assert.Skip($"face-api recognizer weights missing in {modelDir}; run `deid models fetch` (or `make setup`)");
        using var tmp = new TempDir();
        using var detector = new DlibFaceDetector();
        using var predictor = DlibShapePredictor.Load();
        using var recognizer = FaceRecognitionNet.Load(modelDir);
        var aligner = new FfhqAligner(256);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();

        var codes = new List<(int Clip, string Name, torch.Tensor Code)>();
        for (var c = 0; c < Clips.Length; c++)
            foreach (var t in Times)
            {
                var png = tmp.File($"{c}_{t}.png");
                Tool.Ffmpeg("-ss", t, "-i", TestPaths.Video(Clips[c]), "-frames:v", "1", png);
                using var frame = Cv2.ImRead(png);
                var faces = detector.Detect(frame);
                Assert.True(faces.Count > 0, $"{Clips[c]} at {t}s: no face found");
                var face = faces.MaxBy(b => b.Area);
                using var aligned = aligner.Align(frame, predictor.Predict(frame, face));
                Assert.True(aligned.Crop.IsContinuous());
                var bytes = new byte[256 * 256 * 3];
                System.Runtime.InteropServices.Marshal.Copy(aligned.Crop.Data, bytes, 0, bytes.Length);
                codes.Add((c, $"{Clips[c]}@{t}s", recognizer.Encode(CropTensors.FromBgr24(bytes, 256, 256))[0]));
            }

        float worstSame = 0, closestOther = float.MaxValue;
        foreach (var a in codes)
        {
            var others = codes.Where(b => !ReferenceEquals(a.Name, b.Name))
                .Select(b => (b.Clip, b.Name, Distance: (a.Code - b.Code).norm().item<float>())).ToList();
            var nearest = others.MinBy(o => o.Distance);
            Assert.True(nearest.Clip == a.Clip, $"{a.Name}: nearest code is {nearest.Name} ({nearest.Distance:F3}), another speaker");
            worstSame = Math.Max(worstSame, others.Where(o => o.Clip == a.Clip).Max(o => o.Distance));
            closestOther = Math.Min(closestOther, others.Where(o => o.Clip != a.Clip).Min(o => o.Distance));
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"same speaker: max distance {worstSame:F3}; different speakers: min {closestOther:F3}");
        // face-api.js calls two descriptors the same person below 0.6.
        Assert.True(worstSame < 0.6f, $"same-speaker distance up to {worstSame:F3}");
    }
}
