using Deid.Faces;

namespace Deid.Pipeline.Tests;

public class ReenactReportTests
{
    /// <summary>A small report touching every branch of the JSON: null and present numbers, placements, clamped or not.</summary>
    internal static ReenactReport Small()
    {
        var report = new ReenactReport
        {
            Still = "still.png", Driving = "driving.mp4", Output = "out.mp4", Width = 320, Height = 240, CropSize = 256,
            StillFace = new FaceBox(10.25f, 20.5f, 110.75f, 140.125f, 0.9f), StillFaces = 2, Detector = DetectorKind.Ssd,
            RandomWeights = ["E_id", "G"],
            ModelFiles = new Dictionary<string, string> { ["E_attr"] = "latent/e_attr.pt", ["M"] = "latent/m.pt" },
        };
        report.AddFrame(new ReenactFrame(0, 0, ReenactHead.None, null, false, null, null, null, null, null));
        report.AddFrame(new ReenactFrame(1, 0.04, ReenactHead.Generated, 1, false, null, 0.81234567, 2.34567,
            new Placement(100.123, 80.456, 90.789, -3.14159), new Placement(160.5, 120.25, 120, 1.5, Clamped: true)));
        report.AddFrame(new ReenactFrame(2, 0.08, ReenactHead.Generated, 1, true, 0.3333333333, 0.7, null,
            new Placement(101, 81, 91, -3, Clamped: true), new Placement(161, 121, 121, 1)));
        report.AddFrame(new ReenactFrame(3, 0.1200004, ReenactHead.Held, 2, false, null, null, null, null, new Placement(161, 121, 121, 1)));
        report.Elapsed = TimeSpan.FromSeconds(0.5);
        report.AddWarning("the driving face was lost in 1 frames: the last head was held there");
        return report;
    }

    private static ReenactFrame RandomFrame(Random rng, long i)
    {
        Placement? P() => rng.Next(3) == 0 ? null : new Placement(rng.NextDouble() * 640, rng.NextDouble() * 480, rng.NextDouble() * 300,
            rng.NextDouble() * 90 - 45, rng.Next(2) == 0);
        double? D() => rng.Next(3) == 0 ? null : rng.NextDouble();
        return new ReenactFrame(i, i / 25.0 + rng.NextDouble() * 1e-3, (ReenactHead)rng.Next(3), rng.Next(3) == 0 ? null : rng.Next(1, 5),
            rng.Next(2) == 0, D(), D(), D() * 10, P(), P());
    }

    /// <summary>
    /// The frame records go to a spool file, not memory: every field must come back as it went in, in order, and the
    /// totals kept on the way must be what they were when they were counted over the records in memory.
    /// </summary>
    [Fact]
    public void FrameRecordsRoundTripThroughTheSpool_TotalsAsCountedOverThem()
    {
        using var report = new ReenactReport();
        var expected = new List<ReenactFrame>();
        var rng = new Random(7);
        // enough frames to cross the spool's flush size several times
        for (var i = 0; i < 5000; i++)
        {
            var frame = RandomFrame(rng, i);
            expected.Add(frame);
            report.AddFrame(frame);
        }
        Assert.Equal(expected.Count, report.Frames);
        // read twice, side by side: each enumeration is independent
        using var again = report.FrameRecords.GetEnumerator();
        foreach (var (want, got) in expected.Zip(report.FrameRecords))
        {
            Assert.True(again.MoveNext());
            Assert.Equal(want, got);
            Assert.Equal(want, again.Current);
        }
        Assert.False(again.MoveNext());
        Assert.Equal(expected, report.FrameRecords);

        Assert.Equal(expected.Count(f => f.Head == ReenactHead.Generated), report.Generated);
        Assert.Equal(expected.Count(f => f.Head == ReenactHead.Held), report.Held);
        Assert.Equal(expected.Count(f => f.Head == ReenactHead.None), report.NoHead);
        Assert.Equal(expected.Count(f => f.Tracked), report.Tracked);
        double? Mean(Func<ReenactFrame, double?> pick) =>
            expected.Select(pick).OfType<double>().ToList() is { Count: > 0 } v ? Math.Round(v.Average(), 6) : null;
        Assert.Equal(Mean(f => f.WChange), report.MeanWChange);
        Assert.Equal(Mean(f => f.IdentitySimilarity), report.MeanIdentitySimilarity);
        Assert.Equal(Mean(f => f.LandmarkDistance), report.MeanLandmarkDistance);

        using var json = System.Text.Json.JsonDocument.Parse(report.ToJson());
        Assert.Equal(expected.Count, json.RootElement.GetProperty("frames").GetArrayLength());
        Assert.Equal(expected.Count(f => f.LandmarkDistance != null), json.RootElement.GetProperty("totals").GetProperty("framesWithGeneratedLandmarks").GetInt64());

        // disposing releases the spool; the totals stay readable
        report.Dispose();
        Assert.Throws<ObjectDisposedException>(() => report.FrameRecords.ToList());
        Assert.Equal(expected.Count, report.Frames);
    }

    /// <summary>The whole JSON of <see cref="Small"/> as the report has always written it: readers of reports rely on every name and rounding.</summary>
    [Fact]
    public void Json_KeepsItsShape()
    {
        using var report = Small();
        Assert.Equal(Golden, report.ToJson().ReplaceLineEndings("\n"));
    }

    private const string Golden = """
        {
          "kind": "reenact",
          "still": "still.png",
          "driving": "driving.mp4",
          "output": "out.mp4",
          "layout": "still",
          "width": 320,
          "height": 240,
          "cropSize": 256,
          "detector": "ssd",
          "stillFace": {
            "box": [
              10.2,
              20.5,
              110.8,
              140.1
            ],
            "facesInStill": 2
          },
          "recognizer": "faceplugin/fr_feature.onnx",
          "randomWeights": [
            "E_id",
            "G"
          ],
          "modelFiles": {
            "E_attr": "latent/e_attr.pt",
            "M": "latent/m.pt"
          },
          "totals": {
            "frames": 4,
            "generated": 2,
            "held": 1,
            "noHead": 1,
            "tracked": 1,
            "meanWChange": 0.333333,
            "meanIdentitySimilarity": 0.756173,
            "meanLandmarkDistance": 2.34567,
            "framesWithGeneratedLandmarks": 1,
            "elapsedSeconds": 0.5,
            "fps": 8
          },
          "warnings": [
            "the driving face was lost in 1 frames: the last head was held there"
          ],
          "frames": [
            {
              "index": 0,
              "time": 0,
              "head": "none",
              "found": false,
              "held": false,
              "drivingTrack": null,
              "tracked": false,
              "wChange": null,
              "identitySimilarity": null,
              "landmarkDistance": null,
              "driving": null,
              "paste": null
            },
            {
              "index": 1,
              "time": 0.04,
              "head": "generated",
              "found": true,
              "held": false,
              "drivingTrack": 1,
              "tracked": false,
              "wChange": null,
              "identitySimilarity": 0.812346,
              "landmarkDistance": 2.346,
              "driving": {
                "x": 100.12,
                "y": 80.46,
                "side": 90.79,
                "angle": -3.142
              },
              "paste": {
                "x": 160.5,
                "y": 120.25,
                "side": 120,
                "angle": 1.5,
                "clamped": true
              }
            },
            {
              "index": 2,
              "time": 0.08,
              "head": "generated",
              "found": true,
              "held": false,
              "drivingTrack": 1,
              "tracked": true,
              "wChange": 0.333333,
              "identitySimilarity": 0.7,
              "landmarkDistance": null,
              "driving": {
                "x": 101,
                "y": 81,
                "side": 91,
                "angle": -3,
                "clamped": true
              },
              "paste": {
                "x": 161,
                "y": 121,
                "side": 121,
                "angle": 1
              }
            },
            {
              "index": 3,
              "time": 0.12,
              "head": "held",
              "found": false,
              "held": true,
              "drivingTrack": 2,
              "tracked": false,
              "wChange": null,
              "identitySimilarity": null,
              "landmarkDistance": null,
              "driving": null,
              "paste": {
                "x": 161,
                "y": 121,
                "side": 121,
                "angle": 1
              }
            }
          ]
        }
        """;
}
