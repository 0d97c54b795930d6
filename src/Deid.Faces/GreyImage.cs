using OpenCvSharp;

namespace Deid.Faces;

/// <summary>The grey levels dlib's detector and shape predictor read, and the motion maps compare.</summary>
public static class GreyImage
{
    /// <summary>A BGR or BGRA image in 8-bit grey (BT.601 luma, the weights dlib converts with); the caller owns it.</summary>
    public static Mat From(Mat bgr)
    {
        var grey = new Mat();
        Cv2.CvtColor(bgr, grey, bgr.Channels() == 4 ? ColorConversionCodes.BGRA2GRAY : ColorConversionCodes.BGR2GRAY);
        return grey;
    }
}
