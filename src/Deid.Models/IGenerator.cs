using TorchSharp;

namespace Deid.Models;

/// <summary>
/// G as the composed model sees it: W-space codes in, images out. Kept minimal so the composed
/// model can be tested with a fake and so any StyleGAN2 variant can be adapted to it.
/// </summary>
public interface IGenerator
{
    /// <summary>Length of one W code.</summary>
    int StyleDim { get; }

    /// <summary>
    /// Draws images from W codes <c>[B,StyleDim]</c> (the same w fed to every layer), returning
    /// <c>[B,3,H,W]</c> roughly in [-1,1] (not clamped).
    /// </summary>
    torch.Tensor Synthesize(torch.Tensor w);
}
