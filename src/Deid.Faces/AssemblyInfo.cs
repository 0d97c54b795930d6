namespace Deid.Faces;
