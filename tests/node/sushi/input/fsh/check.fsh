Profile: SinsAtOneSite
Parent: https://fhir.spinecds.org/StructureDefinition/spine-sins
Id: sins-at-one-site
* bodySite 1..1

Instance: sins-example
InstanceOf: SinsAtOneSite
Usage: #example
* status = #final
* code = https://fhir.spinecds.org/CodeSystem/spinecds-local#sins-total
* effectiveDateTime = "2026-05-30"
* valueInteger = 9
* bodySite = http://snomed.info/sct#14293000

Instance: ecog-example
InstanceOf: https://fhir.spinecds.org/StructureDefinition/spine-ecog-performance-status
Usage: #example
* status = #final
* category = http://terminology.hl7.org/CodeSystem/observation-category#survey
* subject = Reference(Patient/p1)
* code = http://loinc.org#89247-1
* effectiveDateTime = "2026-05-30"
* valueInteger = 1
