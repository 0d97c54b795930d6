using TorchSharp;

namespace Deid.Models;

/// <summary>
/// E_id: a frozen face-recognition network that turns aligned face crops into identity codes.
/// Several networks fill this role (IR-SE50, the face-api recogniser), so the composed model
/// only depends on this shape of input and output.
/// </summary>
public interface IIdentityEncoder
{
    /// <summary>Length of one identity code.</summary>
    int Dim { get; }

    /// <summary>
    /// Encodes a batch of FFHQ-aligned crops, <c>[B,3,256,256]</c> RGB in [-1,1], into <c>[B,Dim]</c>.
    /// Each implementation does its own crop/resize/normalisation from that common format.
    /// </summary>
    torch.Tensor Encode(torch.Tensor alignedCrops256);
}
