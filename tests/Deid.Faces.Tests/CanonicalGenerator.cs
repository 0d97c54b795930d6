using System.Globalization;
using System.Text;
using Deid.Faces;
using OpenCvSharp;

namespace Deid.Faces.Tests;

/// <summary>Regenerates FfhqAligner's canonical landmark table from real media (run explicitly).</summary>
public class CanonicalGenerator
{
    [Fact(Explicit = true)]
    public void PrintCanonicalTable()
    {
        using var det = new DlibFaceDetector();
        var sum = new double[FaceLandmarks.Count * 2];
        int n = 0;
        var sources = TestMedia.Photos
            .Concat(TestMedia.Frames("talk_d3.mp4", 12, 30))
            .Concat(TestMedia.Frames("talk_d0_noaudio.mp4", 6, 12))
            .Concat(TestMedia.Frames("talk_small.mp4", 8, 20))
            .Concat(TestMedia.Frames("talk_d13_portrait_noaudio.mp4", 8, 40))
            .Concat(TestMedia.Frames("wide_s13.mp4", 6, 16))
            .Concat(TestMedia.Frames("talk_1080p.mp4", 8, 18));

        foreach (var file in sources)
        {
            using var img = TestMedia.Read(file);
            foreach (var box in det.Detect(img))
            {
                var lm = TestMedia.Predictor.Predict(img, box);
                var quad = FfhqAligner.Quad(lm);
                using var c2f = FfhqAligner.CropToFrameMatrix(quad, 1);
                using var f2c = new Mat();
                Cv2.InvertAffineTransform(c2f, f2c);
                for (int i = 0; i < FaceLandmarks.Count; i++)
                {
                    var p = lm.Points[i];
                    // in size-1 crop pixels, +0.5 → unit coordinates
                    sum[2 * i] += f2c.At<double>(0, 0) * p.X + f2c.At<double>(0, 1) * p.Y + f2c.At<double>(0, 2) + 0.5;
                    sum[2 * i + 1] += f2c.At<double>(1, 0) * p.X + f2c.At<double>(1, 1) * p.Y + f2c.At<double>(1, 2) + 0.5;
                }
                n++;
            }
        }
        var sb = new StringBuilder($"// {n} faces\n");
        for (int i = 0; i < FaceLandmarks.Count; i++)
            sb.Append(string.Format(CultureInfo.InvariantCulture, "{0:F4}f, {1:F4}f,{2}", sum[2 * i] / n, sum[2 * i + 1] / n, i % 4 == 3 ? "\n" : " "));
        File.WriteAllText("/tmp/faces-canonical.txt", sb.ToString());

    }
}
