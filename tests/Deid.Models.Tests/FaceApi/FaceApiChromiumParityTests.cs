using Deid.Models.FaceApi;
using TorchSharp;
using Xunit;
using static Deid.Models.Tests.FaceApi.FaceApiTestData;

namespace Deid.Models.Tests.FaceApi;

/// <summary>Our port against face-api.js 1.7.15 itself, run in headless Chromium (see FaceApiReference).</summary>
public class FaceApiChromiumParityTests
{
    [Fact]
    public void Reference_is_face_api_1_7_15_on_the_cpu_backend_and_saw_the_same_pixels()
    {
        var r = FaceApiReference.Load();
        Assert.Equal("1.7.15", r.FaceApiVersion);
        Assert.Equal("cpu", r.Backend);
        // Chromium colour-manages images; a differing hash would mean the networks saw other pixels than ours.
        foreach (var (name, img) in r.Images)
        {
            var (w, h, rgb) = PngImage.Decode(Image(name));
            Assert.Equal((img.Width, img.Height), (w, h));
            Assert.Equal(img.DecodedRgbFnv1a, FaceApiReference.Fnv1a(rgb));
        }
    }

    [Theory]
    [InlineData(FaceLandmark68Net.InputSize, "Input112RgbBase64")]
    [InlineData(FaceRecognitionNet.InputSize, "Input150RgbBase64")]
    public void Square_input_reproduces_the_canvas_face_api_draws(int size, string field)
    {
        var img = FaceApiReference.Load().Images["face_rectangular.png"];
        using var scope = torch.NewDisposeScope();
        var want = FaceApiReference.RgbTensor(size == 112 ? img.Input112RgbBase64! : img.Input150RgbBase64!, size);
        var got = FaceApiInput.ToSquare(PngImage.Load(Image("face_rectangular.png")), size);
        var diff = (got - want).abs();
        var exact = diff.eq(0).to_type(torch.ScalarType.Float32).mean().item<float>();
        var mean = diff.mean().item<float>(); var max = diff.max().item<float>();
        Log($"{field}: {exact:P2} of bytes equal, mean |diff| {mean:F4}, max {max}");
        Assert.True(exact > 0.9f && mean < 0.2f && max <= 8, $"{field}: {exact:P2} equal, mean {mean:F4}, max {max}");
    }

    [Fact]
    public void Square_input_passes_gradients()
    {
        using var scope = torch.NewDisposeScope();
        var x = (torch.rand(2, 3, 61, 89) * 255).requires_grad_(true);
        var sq = FaceApiInput.ToSquare(x, FaceLandmark68Net.InputSize);
        Assert.Equal(new long[] { 2, 3, 112, 112 }, sq.shape);
        sq.sum().backward();
        Assert.True(x.grad is not null && x.grad.abs().min().item<float>() > 0, "every source pixel should receive gradient");
    }

    [Theory]
    [InlineData("face1.png", false)]
    [InlineData("face2.png", false)]
    [InlineData("face_rectangular.png", false)]
    [InlineData("face1.png", true)]
    [InlineData("face2.png", true)]
    [InlineData("face_rectangular.png", true)]
    public void Landmarks_match_face_api_in_chromium(string image, bool tiny)
    {
        RequireWeights(tiny ? FaceLandmark68Net.TinyManifestName : FaceLandmark68Net.ManifestName);
        using var net = FaceLandmark68Net.Load(ModelDir, tiny: tiny);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var img = FaceApiReference.Load().Images[image];
        var got = net.forward(PngImage.Load(Image(image))).data<float>().ToArray();
        var (mean, max) = FaceApiReference.Distances(got, FaceApiReference.Points(tiny ? img.TinyLandmarks : img.Landmarks));
        Log($"{(tiny ? "tiny " : "")}{image}: vs face-api.js 1.7.15 mean {mean:F4} px, max {max:F4} px");
        Assert.True(max < 1f, $"{image}: max {max:F4} px");
    }

    [Theory]
    [InlineData("face1.png")]
    [InlineData("face2.png")]
    [InlineData("face_rectangular.png")]
    public void Descriptor_matches_face_api_in_chromium(string image)
    {
        RequireWeights(FaceRecognitionNet.ManifestName);
        using var net = FaceRecognitionNet.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var got = net.forward(PngImage.Load(Image(image))).data<float>().ToArray();
        var want = FaceApiReference.Load().Images[image].Descriptor;
        var maxDiff = got.Zip(want, (a, b) => Math.Abs(a - b)).Max();
        Log($"{image}: descriptor max |diff| vs face-api.js 1.7.15 {maxDiff:F5}");
        Assert.True(maxDiff < 0.02f, $"{image}: {maxDiff:F5}");
    }

    /// <summary>
    /// The shared golden faceLandmarkPositionsRect(Tiny).json was not made by 1.7.15 on the CPU backend (face-api's own
    /// suite checks it at 2 px in a browser, 5-6 px in node), so it cannot be met to 1 px: face-api.js 1.7.15 itself is
    /// mean 0.487 / max 1.236 px from it (tiny: see the log), ours mean 0.508 / max 1.290 px. We hold ours to
    /// face-api's own distance plus a small margin for the residual canvas-resampling differences (≤0.11 px).
    /// </summary>
    [Theory]
    [InlineData(false, "faceLandmarkPositionsRect.json")]
    [InlineData(true, "faceLandmarkPositionsRectTiny.json")]
    public void Rectangular_golden_is_as_far_from_ours_as_from_face_api_1_7_15(bool tiny, string golden)
    {
        RequireWeights(tiny ? FaceLandmark68Net.TinyManifestName : FaceLandmark68Net.ManifestName);
        using var net = FaceLandmark68Net.Load(ModelDir, tiny: tiny);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var want = Landmarks(golden);
        var img = FaceApiReference.Load().Images["face_rectangular.png"];
        var faceApi = (tiny ? img.TinyLandmarks : img.Landmarks).SelectMany(p => p).ToArray();
        var (refMean, refMax) = FaceApiReference.Distances(faceApi, want);
        var ours = net.forward(PngImage.Load(Image("face_rectangular.png"))).data<float>().ToArray();
        var (mean, max) = FaceApiReference.Distances(ours, want);
        Log($"{golden}: face-api.js 1.7.15 is mean {refMean:F4} / max {refMax:F4} px from it; ours mean {mean:F4} / max {max:F4} px");
        Assert.True(mean <= refMean + 0.05f && max <= refMax + 0.15f, $"ours mean {mean:F4} max {max:F4}; face-api mean {refMean:F4} max {refMax:F4}");
    }

    /// <summary>
    /// faces.jpg as face-api's detectAllFaces().withFaceLandmarks().withFaceDescriptors() runs it: SSD box → integer
    /// crop → landmarks → (alignedRect) and dlib-style rect → integer crop → descriptor. The boxes are face-api's
    /// (we have no SSD port); everything after is ours. 1.7.15 crops the descriptor input with
    /// align({ useDlibAlignment: true }), not the minimum-box alignedRect it reports; with alignedRect our descriptors
    /// were up to 0.115 off.
    /// </summary>
    [Fact]
    public void Faces_jpg_pipeline_matches_face_api_and_its_golden_data()
    {
        RequireWeights(FaceLandmark68Net.ManifestName);
        RequireWeights(FaceRecognitionNet.ManifestName);
        using var lmNet = FaceLandmark68Net.Load(ModelDir);
        using var recNet = FaceRecognitionNet.Load(ModelDir);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        var faces = FaceApiReference.Load().Faces;
        var goldenLm = FaceApiTestData.LandmarkSets("facesFaceLandmarkPositions.json");
        var goldenDesc = FaceApiTestData.DescriptorSets("facesFaceDescriptors.json");
        Assert.Equal(6, faces.Detections.Count);
        float worstUnshifted = 0, worstLm = 0, worstGoldenLm = 0, worstRefGoldenLm = 0, worstDesc = 0, worstGoldenDesc = 0, worstRefGoldenDesc = 0;
        var usedGolden = new HashSet<int>();
        foreach (var (det, k) in faces.Detections.Select((d, k) => (d, k)))
        {
            using var patch = PngImage.Load(Convert.FromBase64String(det.Patch.Png), $"face {k} patch");
            var boxRect = FaceApiCrops.ExtractRect(det.Box, faces.Width, faces.Height);
            var crop = FaceApiCrops.Crop(patch, det.Patch, boxRect);
            var unshifted = lmNet.forward(crop).data<float>().ToArray();
            // face-api crops at the floored box but shifts the landmarks back by the unfloored box corner.
            var lm = unshifted.Select((v, i) => v + (float)(i % 2 == 0 ? det.Box.X : det.Box.Y)).ToArray();
            var (_, maxU) = FaceApiReference.Distances(unshifted, FaceApiReference.Points(det.UnshiftedLandmarks));
            var (_, maxL) = FaceApiReference.Distances(lm, FaceApiReference.Points(det.Landmarks));

            // The golden files list the faces in another order: pair by landmark centroid.
            var g = Enumerable.Range(0, goldenLm.Count).MinBy(i => Dist(Centroid(goldenLm[i]), Centroid(FaceApiReference.Points(det.Landmarks))));
            Assert.True(usedGolden.Add(g), $"face {k}: golden face {g} matched twice");
            var (_, maxG) = FaceApiReference.Distances(lm, goldenLm[g]);
            var (_, maxRefG) = FaceApiReference.Distances(det.Landmarks.SelectMany(p => p).ToArray(), goldenLm[g]);

            var aligned = FaceApiCrops.Align(lm);
            var refAligned = FaceApiCrops.ExtractRect(det.AlignedRect, faces.Width, faces.Height);
            Assert.Equal(refAligned, FaceApiCrops.ExtractRect(aligned, faces.Width, faces.Height));
            var descRect = FaceApiCrops.ExtractRect(FaceApiCrops.AlignDlib(lm, boxRect.Width, boxRect.Height), faces.Width, faces.Height);
            var refDescRect = FaceApiCrops.ExtractRect(det.DescriptorRect, faces.Width, faces.Height);
            var desc = recNet.forward(FaceApiCrops.Crop(patch, det.Patch, descRect)).data<float>().ToArray();
            var dDesc = MaxDiff(desc, det.Descriptor);
            var gd = Enumerable.Range(0, goldenDesc.Count).MinBy(i => L2(goldenDesc[i], desc));
            var dGolden = MaxDiff(desc, goldenDesc[gd]);
            var dRefGolden = MaxDiff(det.Descriptor, goldenDesc[gd]);
            Log($"face {k} (score {det.Score:F3}, golden #{g}/#{gd}): landmarks max vs face-api on its crop {maxU:F3} px, in the image {maxL:F3} px, " +
                $"vs golden {maxG:F3} px (face-api vs golden {maxRefG:F3}); aligned rect {refAligned}, descriptor crop {descRect} (face-api {refDescRect}); " +
                $"descriptor max |diff| vs face-api {dDesc:F4}, vs golden {dGolden:F4} (face-api vs golden {dRefGolden:F4}), L2 to golden {L2(desc, goldenDesc[gd]):F4}");
            Assert.Equal(g, gd);
            Assert.True(dGolden <= dRefGolden + 0.005f, $"face {k}: descriptor vs golden {dGolden:F4}, face-api's own {dRefGolden:F4}");
            worstUnshifted = Math.Max(worstUnshifted, maxU); worstLm = Math.Max(worstLm, maxL);
            worstGoldenLm = Math.Max(worstGoldenLm, maxG); worstRefGoldenLm = Math.Max(worstRefGoldenLm, maxRefG);
            worstDesc = Math.Max(worstDesc, dDesc); worstGoldenDesc = Math.Max(worstGoldenDesc, dGolden); worstRefGoldenDesc = Math.Max(worstRefGoldenDesc, dRefGolden);
        }
        Log($"worst: landmarks vs face-api {worstLm:F3} px, vs golden {worstGoldenLm:F3} px (face-api itself {worstRefGoldenLm:F3}); " +
            $"descriptors vs face-api {worstDesc:F4}, vs golden {worstGoldenDesc:F4} (face-api itself {worstRefGoldenDesc:F4})");
        Assert.True(worstLm < 1f, $"landmarks vs face-api {worstLm:F3} px");
        Assert.True(worstGoldenLm < 2f, $"landmarks vs golden {worstGoldenLm:F3} px (face-api's own tolerance is 2)");
        Assert.True(worstDesc < 0.02f, $"descriptors vs face-api {worstDesc:F4}");
        // facesFaceDescriptors.json predates 1.7.15: face-api.js 1.7.15 itself is up to 0.0324 per component from it
        // (face 3; 0.010-0.032 over the six faces), so 0.02 cannot be met; ours is held to face-api's own distance
        // per face (above) and overall.
        Assert.True(worstGoldenDesc <= worstRefGoldenDesc + 0.005f, $"descriptors vs golden {worstGoldenDesc:F4} (face-api {worstRefGoldenDesc:F4})");
    }

    private static (float X, float Y) Centroid(IReadOnlyList<(float X, float Y)> p) => (p.Average(q => q.X), p.Average(q => q.Y));
    private static float Dist((float X, float Y) a, (float X, float Y) b) => MathF.Sqrt(MathF.Pow(a.X - b.X, 2) + MathF.Pow(a.Y - b.Y, 2));
    private static float MaxDiff(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
    private static float L2(float[] a, float[] b) => MathF.Sqrt(a.Zip(b, (x, y) => (x - y) * (x - y)).Sum());
}
