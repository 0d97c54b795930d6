using System.Text.Json;
using Deid.Faces;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Faces.Tests;

/// <summary>dlib's faces and landmarks against the 68-point landmarks face-api.js computed for its test images.</summary>
public class FaceApiGoldenTests
{
    private static Point2f[][] Golden(string name)
    {
        var path = TestPaths.Golden("face-api", "data", name);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        Point2f[] Read(JsonElement arr) => arr.EnumerateArray().Select(p => new Point2f(p.GetProperty("x").GetSingle(), p.GetProperty("y").GetSingle())).ToArray();
        var root = doc.RootElement;
        return root[0].ValueKind == JsonValueKind.Array ? root.EnumerateArray().Select(Read).ToArray() : [Read(root)];
    }

    /// <summary>Mean distance of eye centres, nose tip and mouth corners, relative to the eye distance.</summary>
    private static double KeyPointError(Point2f[] a, Point2f[] b)
    {
        var ka = Keys(a); var kb = Keys(b);
        double eyes = ka[0].DistanceTo(ka[1]);
        return ka.Zip(kb, (p, q) => p.DistanceTo(q)).Average() / eyes;
    }

    private static Point2f[] Keys(Point2f[] p) =>
        [AlignmentTests.Mean(p, 36, 42), AlignmentTests.Mean(p, 42, 48), p[30], p[48], p[54]];

    [Fact]
    public void EverySixFacesOfTheGroupImageIsFoundWithMatchingLandmarks()
    {
        using var img = TestMedia.Read(TestPaths.Golden("face-api", "images", "faces.jpg"));
        using var det = new DlibFaceDetector(upsample: 1);
        var faces = det.Detect(img);
        var golden = Golden("facesFaceLandmarkPositions.json");
        Assert.Equal(golden.Length, faces.Count);
        var ours = faces.Select(f => TestMedia.Predictor.Predict(img, f).Points).ToList();
        foreach (var g in golden)
        {
            var best = ours.Min(o => KeyPointError(o, g));
            Assert.True(best < 0.12, $"face at {g[30]}: key-point error {best:F3} of the eye distance");
        }
    }

    [Theory]
    [InlineData("face1.png", "faceLandmarkPositions1.json")]
    [InlineData("face2.png", "faceLandmarkPositions2.json")]
    public void TightCropsGiveTheSameLandmarks(string image, string landmarks)
    {
        using var img = TestMedia.Read(TestPaths.Golden("face-api", "images", image));
        // face-api's crops are filled by the face; HOG needs some context round it.
        using var padded = new Mat();
        Cv2.CopyMakeBorder(img, padded, 60, 60, 60, 60, BorderTypes.Replicate);
        using var det = new DlibFaceDetector(upsample: 1);
        var faces = det.Detect(padded);
        Assert.Single(faces);
        var ours = TestMedia.Predictor.Predict(padded, faces[0]).Points.Select(p => new Point2f(p.X - 60, p.Y - 60)).ToArray();
        var err = KeyPointError(ours, Golden(landmarks)[0]);
        Assert.True(err < 0.12, $"{image}: key-point error {err:F3} of the eye distance");
    }

    [Fact]
    public void NoFaceInABlankImage()
    {
        using var img = TestMedia.Read(TestPaths.Golden("face-api", "images", "white.png"));
        using var det = new DlibFaceDetector(upsample: 1);
        Assert.Empty(det.Detect(img));
    }
}
