"""pysaml2 attribute map of the eIDAS natural-person attributes (eIDAS SAML
Attribute Profile 1.2), URI name format, to their friendly names."""

PREFIX = "http://eidas.europa.eu/attributes/naturalperson/"

MAP = {
    "identifier": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
    "fro": {
        PREFIX + "PersonIdentifier": "PersonIdentifier",
        PREFIX + "CurrentFamilyName": "FamilyName",
        PREFIX + "CurrentGivenName": "FirstName",
        PREFIX + "DateOfBirth": "DateOfBirth",
    },
    "to": {
        "PersonIdentifier": PREFIX + "PersonIdentifier",
        "FamilyName": PREFIX + "CurrentFamilyName",
        "FirstName": PREFIX + "CurrentGivenName",
        "DateOfBirth": PREFIX + "DateOfBirth",
    },
}
